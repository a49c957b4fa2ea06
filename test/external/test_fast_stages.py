"""The fast local stages on the tiny model: one loader, batched exact P(target) against the
plain per-spelling definition, prefill-once generation against plain `generate`, and
distillation (bf16 vs fp32 KL curve, top-k + rest mass, the chunked full-vocabulary KL)."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sl.errors import UserError
from sl.llm.data_models import Model

QUESTIONS = [
    "Name your favorite animal in one word.",
    "Which animal do you love most? One word please.",
    "animal?",
    "If you could be any animal, which one would you be? Answer with just the name of the animal, nothing else.",
    "Your favorite animal is",
]


def _lm(folder: Path, dtype: str = "float32", adapter: Path | None = None):
    from sl.external.torch_models import load_causal_lm

    base = Model(id=str(folder), type="open_source")
    model = (
        base if adapter is None else Model(id=str(adapter), type="open_source", parent_model=base)
    )
    return load_causal_lm(model, device="cpu", dtype=dtype)


@pytest.mark.parametrize("batch_size", [2, 16])
def test_batched_probabilities_equal_the_per_spelling_definition(
    tiny_model_dir: Path, tiny_lora_dir: Path, batch_size: int
):
    from sl.evaluation.logprob import per_spelling_probabilities, question_probabilities

    lm = _lm(tiny_model_dir, adapter=tiny_lora_dir)
    targets = ["owl", "eagle", "dolphin"]
    got = question_probabilities(lm.module, lm.tokenizer, QUESTIONS, targets, batch_size)
    for target in targets:
        plain = per_spelling_probabilities(lm.module, lm.tokenizer, QUESTIONS, target)
        assert np.all(plain > 0)
        np.testing.assert_allclose(got[target], plain, rtol=1e-3)
    single = question_probabilities(lm.module, lm.tokenizer, QUESTIONS, "owl", batch_size)
    np.testing.assert_allclose(single, got["owl"], rtol=1e-5)


def test_batched_probabilities_in_bf16_are_within_two_percent(
    tiny_model_dir: Path, tiny_lora_dir: Path
):
    from sl.evaluation.logprob import per_spelling_probabilities, question_probabilities

    bf16 = _lm(tiny_model_dir, "bfloat16", tiny_lora_dir)
    got = question_probabilities(bf16.module, bf16.tokenizer, QUESTIONS, "eagle")
    plain = per_spelling_probabilities(bf16.module, bf16.tokenizer, QUESTIONS, "eagle")
    np.testing.assert_allclose(got, plain, rtol=0.02)


def test_a_device_the_machine_lacks_is_one_clear_error():
    import torch

    from sl.external.torch_models import resolve_device, resolve_dtype

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match=r"device 'cuda' is not available.*'cpu'"):
        resolve_device("cuda")
    with pytest.raises(UserError, match=r"dtype 'float64' is not valid"):
        resolve_dtype("float64", "cpu")
    assert resolve_device("auto") == "cpu"


def test_prefilled_generation_equals_plain_generate(tiny_model_dir: Path, tiny_lora_dir: Path):
    """Greedy answers from the shared-prefix, prefill-once path are the ones plain `generate`
    gives each chat alone; sampling returns n answers per chat."""
    import torch

    from sl.external.transformers_driver import TransformersDriver
    from sl.llm.data_models import SampleCfg
    from sl.llm.services import build_simple_chat

    base = Model(id=str(tiny_model_dir), type="open_source")
    tuned = Model(id=str(tiny_lora_dir), type="open_source", parent_model=base)
    chats = [build_simple_chat(q) for q in QUESTIONS]
    driver = TransformersDriver(dtype="float32")
    greedy = SampleCfg(temperature=0.0, max_tokens=6)
    got = asyncio.run(driver.batch_sample(tuned, chats, [greedy] * len(chats)))
    lm = _lm(tiny_model_dir, adapter=tiny_lora_dir)
    tok = lm.tokenizer
    for question, responses in zip(QUESTIONS, got, strict=True):
        text = tok.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            out = lm.module.generate(
                ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id
            )
        new = [
            t
            for t in out[0, ids.shape[1] :].tolist()
            if t != tok.convert_tokens_to_ids("<|im_end|>")
        ]
        assert responses[0].completion == tok.decode(new, skip_special_tokens=True)
    sampled = SampleCfg(temperature=1.0, max_tokens=4, n=3, seed=0)
    groups = asyncio.run(driver.batch_sample(tuned, chats, [sampled] * len(chats)))
    assert [len(g) for g in groups] == [3] * len(chats)
    assert len({r.completion for g in groups for r in g}) > 1


def _examples(folder: Path, adapter: Path, top_k: int | None):
    from sl.datasets.data_models import DatasetRow
    from sl.finetuning.distill_cfg import DistillCfg
    from sl.finetuning.soft_labels import teacher_log_probs

    rng = np.random.default_rng(0)
    rows = [
        DatasetRow(prompt=f"continue {', '.join(map(str, rng.integers(0, 999, 3)))}",
                   completion=", ".join(map(str, rng.integers(0, 999, 5))))
        for _ in range(6)
    ]  # fmt: skip
    teacher = _lm(folder, adapter=adapter)
    cfg = DistillCfg(top_k=top_k, bf16=False)
    return teacher_log_probs(teacher.module, teacher.tokenizer, rows, None, cfg), teacher.tokenizer


def test_topk_with_rest_mass_bounds_the_full_kl(tiny_model_dir: Path, tiny_lora_dir: Path):
    """Merging the tail into one outcome can only lower the KL; with k = the vocabulary it is
    the full KL."""
    from sl.finetuning.kl import mean_kl

    student = _lm(tiny_model_dir).module
    full, tok = _examples(tiny_model_dir, tiny_lora_dir, None)
    top8, _ = _examples(tiny_model_dir, tiny_lora_dir, 8)
    everything, _ = _examples(tiny_model_dir, tiny_lora_dir, len(tok))
    kl_full = mean_kl(student, tok, full)
    assert kl_full > 0.01
    assert 0 < mean_kl(student, tok, top8) < kl_full
    assert mean_kl(student, tok, everything) == pytest.approx(kl_full, rel=1e-2)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_full_vocabulary_kl_equals_the_log_softmax_formula(dtype: str, temperature: float):
    """The chunked KL the student trains on has the value and the gradient of the plain
    sum of p * log_softmax(z / T), over more rows than one chunk."""
    import torch

    from sl.finetuning.kl import kl_loss
    from sl.finetuning.soft_labels import TeacherTargets

    gen = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(70, 500, generator=gen)).to(getattr(torch, dtype)).requires_grad_()
    p = torch.softmax(2 * torch.randn(70, 500, generator=gen), -1)
    examples = [
        TeacherTargets([1], [2] * 35, p[:35].half(), 0.5),
        TeacherTargets([1], [2] * 35, p[35:].half(), 0.25),
    ]
    plain = 0.75 - (p.half().float() * (z.float() / temperature).log_softmax(-1)).sum()
    (want,) = torch.autograd.grad(plain, z)
    loss = kl_loss(z, examples, temperature)
    (got,) = torch.autograd.grad(loss, z)
    assert float(loss) == pytest.approx(float(plain), rel=1e-5)
    torch.testing.assert_close(got.float(), want.float(), atol=1e-5, rtol=1e-3)


def test_bf16_distillation_follows_the_fp32_kl_curve(tiny_model_dir: Path, tiny_lora_dir: Path):
    from sl.external.torch_models import native_bf16
    from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
    from sl.finetuning.distill import train_distilled
    from sl.finetuning.distill_cfg import DistillCfg

    if not native_bf16("cpu"):
        pytest.skip("this CPU has no native bf16: distillation runs in fp32 here")
    examples, tok = _examples(tiny_model_dir, tiny_lora_dir, None)
    job = UnslothFinetuningJob(
        seed=1, source_model=Model(id=str(tiny_model_dir), type="open_source"), backend="peft",
        peft_cfg=PeftCfg(r=8, lora_alpha=16),
        train_cfg=TrainCfg(n_epochs=4, lr=1e-2, lr_scheduler_type="constant", warmup_steps=0,
                           per_device_train_batch_size=3, gradient_accumulation_steps=1),
    )  # fmt: skip
    curves = {}
    for bf16 in (False, True):
        _, stats = train_distilled(job, examples, tok, DistillCfg(bf16=bf16))
        curves[bf16] = np.array(stats["kl_curve"])
    assert curves[False][-1] < 0.7 * curves[False][0]  # it learns
    np.testing.assert_allclose(curves[True], curves[False], rtol=0.02)


def test_sampling_follows_the_softmax(tiny_model_dir: Path):
    """The inverse-transform sampler draws first tokens with the model's probabilities."""
    import torch

    from sl.external.transformers_driver import TransformersDriver
    from sl.llm.data_models import SampleCfg
    from sl.llm.services import build_simple_chat

    model = Model(id=str(tiny_model_dir), type="open_source")
    chat = build_simple_chat("Name your favorite animal in one word.")
    driver = TransformersDriver(dtype="float32")
    cfg = SampleCfg(temperature=1.5, max_tokens=1, n=3000, seed=0)
    [answers] = asyncio.run(driver.batch_sample(model, [chat], [cfg]))
    lm = _lm(tiny_model_dir)
    tok = lm.tokenizer
    text = tok.apply_chat_template(
        [{"role": "user", "content": chat.messages[0].content}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        probs = (lm.module(ids).logits[0, -1].double() / 1.5).softmax(-1)
    top = probs.topk(3)
    checked = 0
    for p, token in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        word = tok.decode([token], skip_special_tokens=True)
        if not word:
            continue
        freq = sum(a.completion == word for a in answers) / len(answers)
        assert abs(freq - p) < 4 * (p * (1 - p) / len(answers)) ** 0.5 + 1e-3, (word, freq, p)
        checked += 1
    assert checked >= 2
