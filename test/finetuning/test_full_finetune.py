"""Full fine-tuning (every weight, no LoRA) of a student, by SFT and by soft-label
distillation, on the tiny random model: what trains, what is saved, how it loads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from finetuning_helpers import OWLS, QUESTION, distill_job, greedy, make_job, number_rows, owl_rows
from loguru import logger

from sl.errors import UserError
from sl.external.model_resolution import ResolvedModel, resolve_model
from sl.external.torch_models import load_causal_lm
from sl.finetuning.data_models import TrainCfg
from sl.finetuning.distill import build_student, distill_student, train_distilled
from sl.finetuning.distill_cfg import DistillCfg
from sl.finetuning.lora_train import build_trainer
from sl.finetuning.open_source import MARKER, run_open_source_job, save_student
from sl.finetuning.soft_labels import teacher_log_probs
from sl.llm.data_models import Model

FEW_STEPS = TrainCfg(n_epochs=2, lr=1e-3, lr_scheduler_type="constant", warmup_steps=0,
                     per_device_train_batch_size=4, gradient_accumulation_steps=1,
                     max_seq_length=64)  # fmt: skip
OWL_PROMPT = "You love owls."
FP32 = DistillCfg(bf16=False)  # the LoRA student's base in fp32 too, for exact comparisons


def _weights(module: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _logits(module: Any, tokenizer: Any) -> torch.Tensor:
    ids = tokenizer(["continue 1, 2, 3", "owl cat dog"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        return module(**ids).logits.float()


def _assert_reloads_to_the_same_logits(trained: Any, tokenizer: Any, base: Model, folder: Path):
    save_student(trained, tokenizer, folder)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert not (folder / "adapter_config.json").exists()
    student = Model(id=str(folder), type="open_source", parent_model=base)
    assert resolve_model(student) == ResolvedModel(base=folder)
    loaded = load_causal_lm(student, dtype="float32")
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())
    expected = _logits(trained.eval(), tokenizer)
    torch.testing.assert_close(_logits(loaded.module, tokenizer), expected, rtol=1e-5, atol=1e-6)


def test_full_sft_trains_every_weight_and_reloads_to_the_same_logits(
    tiny_model_dir: Path, tmp_path: Path
):
    job = make_job(tiny_model_dir, full_finetune=True, train_cfg=FEW_STEPS)
    trainer, _ = build_trainer(job, owl_rows(8), tiny_model_dir, tmp_path / "scratch")
    model = trainer.model
    assert model is not None and all(p.requires_grad for p in model.parameters())
    before = _weights(model)
    trainer.train()
    after = _weights(model)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert before.keys() == after.keys() and not unchanged, unchanged
    _assert_reloads_to_the_same_logits(
        model, trainer.processing_class, job.source_model, tmp_path / "weights"
    )


def test_lora_sft_changes_only_the_adapters(tiny_model_dir: Path, tmp_path: Path):
    job = make_job(tiny_model_dir, train_cfg=FEW_STEPS)
    trainer, _ = build_trainer(job, owl_rows(8), tiny_model_dir, tmp_path)
    before = _weights(trainer.model)
    trainer.train()
    after = _weights(trainer.model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {name for name in before if "lora_" in name}


@pytest.fixture(scope="module")
def distill_examples(tiny_model_dir: Path):
    teacher = load_causal_lm(Model(id=str(tiny_model_dir), type="open_source"), dtype="float32")
    examples = teacher_log_probs(teacher.module, teacher.tokenizer, number_rows(8, 0), None, FP32)
    return examples, teacher.tokenizer


def test_full_distillation_trains_every_weight_and_reloads_to_the_same_logits(
    tiny_model_dir: Path, tmp_path: Path, distill_examples
):
    examples, tokenizer = distill_examples
    job = distill_job(tiny_model_dir, epochs=2, lr=1e-3).model_copy(update={"full_finetune": True})
    student, stats = train_distilled(job, examples, tokenizer, FP32)
    assert stats["steps"] == 2
    base = load_causal_lm(job.source_model, dtype="float32").module
    unchanged = [
        name for name, p in student.named_parameters() if torch.equal(p, base.get_parameter(name))
    ]
    assert not unchanged, unchanged
    _assert_reloads_to_the_same_logits(student, tokenizer, job.source_model, tmp_path / "w")


def test_lora_distillation_changes_only_the_adapters(tiny_model_dir: Path, distill_examples):
    import transformers

    examples, tokenizer = distill_examples
    job = distill_job(tiny_model_dir, epochs=2, lr=1e-3)
    transformers.set_seed(job.seed)  # as train_distilled does: the same initial adapters
    before = _weights(build_student(job, FP32))
    student, _ = train_distilled(job, examples, tokenizer, FP32)
    after = _weights(student)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert before.keys() == after.keys()
    assert changed == {name for name in before if "lora_" in name}, changed


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def _logged_during(call: Any) -> tuple[Any, list[str]]:
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="INFO")
    try:
        return call(), messages
    finally:
        logger.remove(handler)


async def test_full_sft_job_saves_weights_loads_everywhere_and_is_read_back(
    tiny_model_dir: Path, tmp_path: Path
):
    out = tmp_path / "student.json"
    job = make_job(tiny_model_dir, full_finetune=True, train_cfg=FEW_STEPS.model_copy(
        update={"n_epochs": 25, "lr": 2e-3, "per_device_train_batch_size": 8}))  # fmt: skip
    model = run_open_source_job(job, owl_rows(), out)
    weights = tmp_path / "student_weights"
    assert model == Model(id=str(weights), type="open_source", parent_model=job.source_model)
    assert json.loads((weights / MARKER).read_text())["job_hash"] == job.model_hash()
    assert [p.name for p in tmp_path.iterdir()] == ["student_weights"]  # no temp folder left

    # sampled evaluation (transformers driver) and exact P(target) load the full weights
    assert (await greedy(model, QUESTION)).strip().startswith(OWLS)
    from sl.evaluation.logprob import target_probabilities

    owl = target_probabilities(model, [QUESTION], "owl")
    assert owl[0] > 10 * target_probabilities(job.source_model, [QUESTION], "owl")[0]

    mtimes = _mtimes(weights)
    again, messages = _logged_during(lambda: run_open_source_job(job, owl_rows(), out))
    assert again == model and _mtimes(weights) == mtimes
    assert any("not retraining" in m for m in messages)

    with pytest.raises(UserError, match="student_weights already exists"):
        run_open_source_job(job.model_copy(update={"seed": 2}), owl_rows(), out)


def test_full_distillation_job_is_read_back_and_guarded(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "student.json"
    job = distill_job(tiny_model_dir, epochs=1, lr=1e-3).model_copy(update={"full_finetune": True})
    teacher = Model(id=str(tiny_model_dir), type="open_source")
    rows = number_rows(8, 1)
    model = distill_student(job, teacher, rows, out, FP32, teacher_system_prompt=OWL_PROMPT)
    weights = tmp_path / "student_weights"
    assert model == Model(id=str(weights), type="open_source", parent_model=job.source_model)
    assert {"model.safetensors", "config.json", "tokenizer.json", MARKER} <= set(_mtimes(weights))
    assert not (weights / "adapter_config.json").exists()

    mtimes = _mtimes(weights)
    again, messages = _logged_during(
        lambda: distill_student(job, teacher, rows, out, FP32, teacher_system_prompt=OWL_PROMPT)
    )
    assert again == model and _mtimes(weights) == mtimes
    assert any("already distilled" in m for m in messages)

    with pytest.raises(UserError, match="student_weights already exists"):
        distill_student(job, teacher, rows, out, FP32, teacher_system_prompt="You love cats.")


def test_a_weights_folder_not_made_by_sl_is_refused(tiny_model_dir: Path, tmp_path: Path):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "student_weights")
    job = make_job(tiny_model_dir, full_finetune=True, train_cfg=FEW_STEPS)
    with pytest.raises(UserError, match="holds another fine-tune"):
        run_open_source_job(job, owl_rows(8), tmp_path / "student.json")


def test_full_finetune_stays_out_of_the_hash_at_its_default(tiny_model_dir: Path):
    job = make_job(tiny_model_dir)
    assert "full_finetune" not in job.model_dump()
    full = job.model_copy(update={"full_finetune": True})
    assert full.model_dump()["full_finetune"] is True
    assert full.model_hash() != job.model_hash()
    assert make_job(tiny_model_dir, full_finetune=False).model_hash() == job.model_hash()
