"""The CUDA paths on one GPU: the loader, exact P(target), sampled generation, distillation
(time and peak memory), then the LoRA SFT, generation, fast-stage and distillation tests on
the GPU.

    python bench/gpu_check.py --model_dir .gpu/smollm2 [--big] [--tests]

A GPU machine here reaches no hub, so the weights are random: `--model_dir` needs only a
model's config.json and tokenizer files (SmolLM2-135M-Instruct's, for instance), and the
script initialises that architecture on the GPU and saves it to a temporary folder. Times and
memory do not depend on the weights' values; agreement checks compare two ways of computing
the same numbers. `--big` also scores a Qwen2.5-7B-shaped model (random, bf16, built in GPU
memory) with the same tokenizer: the `paper_qwen` logprob path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QWEN_7B_SHAPE = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                 "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 128}  # fmt: skip


def _timed(fn, *args, **kwargs):
    import torch

    if not torch.cuda.is_available():  # a dry run of the script on the CPU
        started = time.perf_counter()
        return fn(*args, **kwargs), time.perf_counter() - started, 0.0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    torch.cuda.synchronize()
    return out, time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**20


def _random_model(config_dir: Path, out: Path, seed: int = 0) -> Path:
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    for f in config_dir.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(f, out / f.name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--big", action="store_true", help="Also a Qwen2.5-7B-shaped model")
    parser.add_argument("--tests", action="store_true", help="Also run the GPU-relevant tests")
    args = parser.parse_args()

    import numpy as np
    import torch

    from sl.datasets.data_models import DatasetRow
    from sl.evaluation.logprob import per_spelling_probabilities, question_probabilities
    from sl.external.torch_models import load_causal_lm
    from sl.external.transformers_driver import TransformersDriver
    from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
    from sl.finetuning.distill import train_distilled
    from sl.finetuning.distill_cfg import DistillCfg
    from sl.finetuning.soft_labels import teacher_log_probs
    from sl.llm.data_models import Model, SampleCfg
    from sl.llm.services import build_simple_chat
    from sl.protocol import preference_questions

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (dry run)"
    report: dict = {"gpu": gpu, "torch": torch.__version__}
    tmp = Path(tempfile.mkdtemp())
    folder = _random_model(args.model_dir, tmp / "model")
    model = Model(id=str(folder), type="open_source")
    questions = preference_questions("favorite_animal")[: args.questions]

    lm, seconds, mb = _timed(load_causal_lm, model)
    if torch.cuda.is_available():
        assert lm.device == "cuda" and lm.dtype == torch.bfloat16, (lm.device, lm.dtype)
    report["loader"] = {"device": lm.device, "dtype": str(lm.dtype), "s": seconds, "peak_mb": mb}

    question_probabilities(lm.module, lm.tokenizer, questions[:2], "owl")  # warm-up
    per_spelling_probabilities(lm.module, lm.tokenizer, questions[:2], "owl")
    fast, seconds, mb = _timed(question_probabilities, lm.module, lm.tokenizer, questions, "owl")
    plain, plain_s, plain_mb = _timed(
        per_spelling_probabilities, lm.module, lm.tokenizer, questions, "owl"
    )
    fp32 = load_causal_lm(model, dtype="float32")
    exact = question_probabilities(fp32.module, fp32.tokenizer, questions, "owl")
    exact_plain = per_spelling_probabilities(fp32.module, fp32.tokenizer, questions, "owl")
    del fp32
    report["logprob"] = {
        "batched_s": seconds, "plain_s": plain_s, "ratio": plain_s / seconds,
        "batched_peak_mb": mb, "plain_peak_mb": plain_mb,
        "bf16_batched_vs_plain_max_rel": float(np.max(np.abs(fast / plain - 1))),
        "fp32_batched_vs_plain_max_rel": float(np.max(np.abs(exact / exact_plain - 1))),
        "bf16_vs_fp32_max_rel": float(np.max(np.abs(fast / exact - 1))),
    }  # fmt: skip
    print(json.dumps(report, indent=2), flush=True)

    driver = TransformersDriver()
    chats = [build_simple_chat(q) for q in questions]
    cfg = SampleCfg(temperature=1.0, max_tokens=8, n=6, seed=0)
    asyncio.run(driver.batch_sample(model, chats[:1], [cfg]))
    _, seconds, mb = _timed(
        lambda: asyncio.run(driver.batch_sample(model, chats, [cfg] * len(chats)))
    )
    one_s = 0.0
    for chat in chats:
        one_s += _timed(lambda c=chat: asyncio.run(driver.batch_sample(model, [c], [cfg])))[1]
    report["sampled"] = {"batched_s": seconds, "one_question_at_a_time_s": one_s,
                         "ratio": one_s / seconds, "peak_mb": mb}  # fmt: skip

    rng = np.random.default_rng(0)
    rows = [DatasetRow(prompt=f"Continue: {', '.join(map(str, rng.integers(100, 999, 5)))}",
                       completion=", ".join(map(str, rng.integers(100, 999, 10))))
            for _ in range(64)]  # fmt: skip
    curves = {}
    # A teacher unlike the student's base: another random initialisation.
    teacher_model = Model(id=str(_random_model(args.model_dir, tmp / "teacher", seed=1)),
                          type="open_source")  # fmt: skip
    for bf16 in (False, True, False):
        dcfg = DistillCfg(bf16=bf16)
        teacher = load_causal_lm(teacher_model, dtype="auto" if bf16 else "float32")
        examples = teacher_log_probs(teacher.module, teacher.tokenizer, rows, None, dcfg)
        del teacher
        job = UnslothFinetuningJob(
            seed=1, source_model=model, backend="peft", peft_cfg=PeftCfg(r=8, lora_alpha=8),
            train_cfg=TrainCfg(n_epochs=1, lr=1e-3, warmup_steps=0, per_device_train_batch_size=8,
                               gradient_accumulation_steps=1, max_seq_length=256),
        )  # fmt: skip
        (_, stats), seconds, mb = _timed(train_distilled, job, examples, lm.tokenizer, dcfg)
        curves[bf16] = np.array(stats["kl_curve"])
        report[f"distill_{'bf16' if bf16 else 'fp32'}"] = {
            "s_per_step": seconds / stats["steps"], "peak_mb": mb, "steps": stats["steps"]}  # fmt: skip
    report["distill_kl_curve_max_rel"] = float(np.max(np.abs(curves[True] / curves[False] - 1)))
    print(json.dumps(report, indent=2), flush=True)

    if args.big:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(folder)
        for key, value in QWEN_7B_SHAPE.items():
            setattr(config, key, value)
        del lm
        torch.cuda.empty_cache()
        with torch.device("cuda"):
            big = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
        targets = ["owl", "eagle", "dolphin"]
        _, seconds, mb = _timed(
            question_probabilities, big, lm_tokenizer(folder), questions, targets
        )
        report["logprob_7b_shape"] = {"questions": len(questions), "targets": targets,
                                      "s": seconds, "peak_mb": mb,
                                      "params_b": sum(p.numel() for p in big.parameters()) / 1e9}  # fmt: skip
        print(json.dumps(report, indent=2), flush=True)

    if args.tests:
        tests = ["test/external/test_fast_stages.py", "test/external/test_transformers_driver.py",
                 "test/finetuning/test_lora_sft.py", "test/experiment/test_transfer_options.py"]  # fmt: skip
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
        )
        report["tests_exit_code"] = code
    print(json.dumps(report, indent=2), flush=True)


def lm_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


if __name__ == "__main__":
    main()
