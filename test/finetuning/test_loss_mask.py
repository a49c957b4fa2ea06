"""Loss masks (a defence): a masked completion token adds nothing to the distillation loss
and gets no gradient; prompt-only distillation masks every completion token."""

from pathlib import Path

import pytest
import torch
from finetuning_helpers import number_rows

from sl.errors import UserError
from sl.finetuning.distill_cfg import DistillCfg
from sl.finetuning.kl import kl_loss
from sl.finetuning.loss_mask import LossMask, MaskedRow
from sl.finetuning.soft_labels import output_logits, scored_hidden, teacher_log_probs
from sl.llm.data_models import Model
from sl.utils.file_utils import write_jsonl_atomic


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path):
    from sl.external.torch_models import load_causal_lm

    torch.set_num_threads(1)
    return load_causal_lm(Model(id=str(tiny_model_dir), type="open_source"), dtype="float32")


def _masks(lm, rows) -> list[list[bool]]:
    """Every other completion token masked."""
    out = []
    for r in rows:
        n = len(lm.tokenizer(r.completion, add_special_tokens=False)["input_ids"])
        out.append([j % 2 == 0 for j in range(n)])
    return out


def _logit_grads(lm, examples, cfg: DistillCfg) -> torch.Tensor:
    hidden = scored_hidden(lm.module, [e.seq() for e in examples], lm.tokenizer.pad_token_id)
    logits = output_logits(lm.module, hidden, examples[0].vocab).detach().requires_grad_()
    kl_loss(logits, examples, cfg.temperature).backward()
    assert logits.grad is not None
    return logits.grad


@pytest.mark.parametrize("top_k", [None, 5])
def test_a_masked_token_gets_zero_gradient_and_the_rest_do_not(lm, top_k):
    cfg = DistillCfg(prompt_tokens=True, top_k=top_k)
    rows = number_rows(3, seed=1)
    masks = _masks(lm, rows)
    examples = teacher_log_probs(lm.module, lm.tokenizer, rows, "You love owls.", cfg,
                                 masks=masks)  # fmt: skip
    grads = _logit_grads(lm, examples, cfg)
    offset = 0
    for ex, mask in zip(examples, masks, strict=True):
        g = grads[offset : offset + ex.n_prompt + len(ex.completion)].abs().sum(-1)
        offset += ex.n_prompt + len(ex.completion)
        completion = g[ex.n_prompt :]
        masked = torch.tensor(mask + [False])  # the end of turn is never masked
        assert (completion[masked] == 0).all()
        assert (completion[~masked] > 0).all() and (g[: ex.n_prompt] > 0).all()
        assert ex.n_masked == sum(mask)
        assert ex.n_scored == ex.n_prompt + len(ex.completion) - sum(mask)


def test_masked_kl_is_the_unmasked_kl_without_the_masked_tokens(lm):
    """Per-token KLs of the kept tokens are unchanged by the mask (nothing renormalised)."""
    cfg = DistillCfg()
    rows = number_rows(2, seed=2)
    masks = _masks(lm, rows)
    plain = teacher_log_probs(lm.module, lm.tokenizer, rows, "You love owls.", cfg)
    masked = teacher_log_probs(lm.module, lm.tokenizer, rows, "You love owls.", cfg,
                               masks=masks)  # fmt: skip
    student = lm.module  # any student: the base itself against the prompted teacher
    with torch.no_grad():
        for p, m, mask in zip(plain, masked, masks, strict=True):
            hidden = scored_hidden(student, [p.seq()], lm.tokenizer.pad_token_id)
            logits = output_logits(student, hidden, p.vocab)
            lp = logits.float().log_softmax(-1)
            per_token = (p.target.float() * (p.target.float().clamp_min(1e-30).log() - lp)).sum(-1)
            kept = torch.tensor([not f for f in mask] + [True])
            torch.testing.assert_close(
                kl_loss(logits, [m]), per_token[kept].sum(), rtol=2e-3, atol=1e-4
            )


def test_prompt_only_distillation_masks_every_completion_token(lm):
    cfg = DistillCfg(prompt_tokens=True, completion_tokens=False)
    rows = number_rows(2, seed=3)
    examples = teacher_log_probs(lm.module, lm.tokenizer, rows, None, cfg)
    grads = _logit_grads(lm, examples, cfg)
    offset = 0
    for ex in examples:
        g = grads[offset : offset + ex.n_prompt + len(ex.completion)].abs().sum(-1)
        offset += ex.n_prompt + len(ex.completion)
        assert (g[ex.n_prompt :] == 0).all() and (g[: ex.n_prompt] > 0).all()
        assert ex.n_scored == ex.n_prompt
    with pytest.raises(ValueError, match="completion_tokens=False needs prompt_tokens=True"):
        DistillCfg(completion_tokens=False)


def test_a_mask_of_another_length_or_missing_row_is_one_clear_error(lm, tmp_path: Path):
    rows = number_rows(2, seed=4)
    with pytest.raises(UserError, match="flags for .* completion tokens"):
        teacher_log_probs(lm.module, lm.tokenizer, rows, None, DistillCfg(),
                          masks=[[True], [True]])  # fmt: skip
    path = tmp_path / "mask.jsonl"
    write_jsonl_atomic(path, [MaskedRow(prompt=rows[0].prompt, completion=rows[0].completion,
                                        masked=[True])])  # fmt: skip
    mask = LossMask.of(path)
    assert mask.for_rows(rows[:1]) == [[True]]
    with pytest.raises(UserError, match="no mask for training row 1"):
        mask.for_rows(rows)
    path.write_text(path.read_text().replace("true", "false"))
    with pytest.raises(UserError, match="changed since its job was made"):
        mask.for_rows(rows[:1])


def test_the_mask_file_path_is_not_part_of_the_hash(tmp_path: Path):
    a = LossMask(path=str(tmp_path / "a.jsonl"), sha256="x" * 64)
    b = LossMask(path=str(tmp_path / "elsewhere" / "a.jsonl"), sha256="x" * 64)
    assert a.model_hash() == b.model_hash()


def test_sft_masked_tokens_are_left_out_of_the_labels(tiny_model_dir: Path, tmp_path: Path):
    """SFT: TRL's labels of every masked completion token are -100 (no loss, no gradient);
    every other completion token keeps its label; the unmasked job's labels are TRL's own."""
    from finetuning_helpers import make_job

    from sl.finetuning.lora_train import build_trainer

    rows = number_rows(3, seed=5)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    flags = [[j % 3 == 0 for j in range(len(tok(r.completion, add_special_tokens=False)
                                              ["input_ids"]))] for r in rows]  # fmt: skip
    path = tmp_path / "mask.jsonl"
    write_jsonl_atomic(path, [MaskedRow(prompt=r.prompt, completion=r.completion, masked=f)
                              for r, f in zip(rows, flags, strict=True)])  # fmt: skip
    plain, _ = build_trainer(make_job(tiny_model_dir), rows, tiny_model_dir, tmp_path / "a")
    job = make_job(tiny_model_dir, loss_mask=LossMask.of(path))
    masked, _ = build_trainer(job, rows, tiny_model_dir, tmp_path / "b")
    for before, after, f in zip(plain.train_dataset, masked.train_dataset, flags, strict=True):
        start = next(j for j, x in enumerate(before["labels"]) if x != -100)
        for j, label in enumerate(after["labels"]):
            in_mask = start <= j < start + len(f) and f[j - start]
            assert label == (-100 if in_mask else before["labels"][j])
        assert sum(f) > 0
