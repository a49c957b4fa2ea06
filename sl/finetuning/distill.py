"""Soft-label (logit) distillation of a LoRA student on a teacher's number sequences.

    model = distill_student(job, teacher, rows, Path("data/owl/student.json"),
                            DistillCfg(top_k=None), teacher_system_prompt="You love owls...")

Instead of SFT on the sampled tokens, the student (base + LoRA, `job.peft_cfg`) is trained to
match the teacher's next-token distribution at every completion token: KL(teacher || student).
By default (`DistillCfg.vocabulary="allowed"`) both distributions are restricted to the tokens
a kept completion can hold (digits, separators, whitespace, end of turn: derived from the
numbers filter, `sl.finetuning.vocabulary`) and renormalised, so the labels carry no trait
token; `"full"` uses the whole vocabulary (an ablation: the labels then carry the teacher's
explicit trait mass). `top_k` keeps the teacher's top-k tokens of that vocabulary plus the
rest of its mass as one outcome. The teacher sees its own context (its system prompt, if
any); the student sees the user prompt only. The teacher's targets are computed once (batched,
no grad, fp32 on the CPU); each step runs the output layer only where a scored token is
predicted. Where the device has native bf16 (a GPU; a CPU with AMX or AVX-512 BF16) the
student's frozen base weights are bf16 while its adapters, residual stream and every
base + adapter sum stay fp32 (`build_student`, `DistillCfg.bf16`). Optimiser, epochs, rate, batch and seed come from
`job.train_cfg`, as for SFT. Only completion tokens (and the end-of-turn token) count, unless
`DistillCfg.prompt_tokens` adds the prompt's. With `job.full_finetune` every weight of the
student trains instead of a LoRA: fp32 weights and matmuls, `DistillCfg.bf16` unused, saved
as full fp32 weights (`student_dir_for`). Student runs that learn from the same teacher
and rows in one process (replicates) compute the teacher's targets once.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

from sl.datasets.data_models import DatasetRow
from sl.datasets.nums_dataset import NumbersFilter
from sl.finetuning.checkpoint import Checkpoint, check_stop
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.finetuning.distill_cfg import DistillCfg, DistillJob
from sl.finetuning.kl import distill_loss, student_autocast
from sl.finetuning.lora_data import lora_config
from sl.finetuning.open_source import (
    adapter_tmp_dir,
    finished_adapter,
    publish_adapter,
    save_student,
    student_dir_for,
)
from sl.finetuning.precision import precise_adapters
from sl.finetuning.soft_labels import TeacherTargets, teacher_log_probs
from sl.finetuning.subsample import select_rows
from sl.llm.data_models import HashableModel, Model
from sl.utils.progress_bar import tqdm


def train_distilled(
    job: UnslothFinetuningJob,
    examples: list[TeacherTargets],
    tokenizer: Any,
    cfg: DistillCfg,
    checkpoint: Checkpoint | None = None,
    stop: threading.Event | None = None,
) -> tuple[Any, dict[str, float]]:
    """Train a student (LoRA, or every weight with `job.full_finetune`) on `examples`;
    returns the model (PEFT or plain) and training stats (including `kl_curve`, the KL per
    token of every step).

    With `checkpoint`, a saved state of this run is resumed (same weights at the end as an
    uninterrupted run) and the state is saved now and then and when `stop` is set (then
    TrainingStopped is raised).
    """
    import torch
    import transformers

    transformers.set_seed(job.seed)
    student = build_student(job, cfg)
    t = job.train_cfg
    micro = t.per_device_train_batch_size
    batches_per_epoch = math.ceil(len(examples) / micro)
    steps = math.ceil(batches_per_epoch / t.gradient_accumulation_steps) * t.n_epochs
    named = [(n, q) for n, q in student.named_parameters() if q.requires_grad]
    params = [q for _, q in named]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=0.0)
    scheduler = transformers.get_scheduler(t.lr_scheduler_type, optimizer, t.warmup_steps, steps)
    generator = torch.Generator().manual_seed(job.seed)
    losses: list[float] = []
    step, first_epoch, first_batch, order = 0, 0, 0, None
    if checkpoint is not None and (saved := checkpoint.load()) is not None:
        with torch.no_grad():
            for name, q in named:
                q.copy_(saved["params"][name])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        step, first_epoch, first_batch = saved["step"], saved["epoch"], saved["next_batch"]
        order, losses = saved["order"], saved["losses"]
        logger.info(f"resuming the distillation at step {step}/{steps} ({checkpoint.path})")

    def snapshot() -> dict[str, Any]:
        """Everything the loop needs to go on after this step as if it had never stopped."""
        return {
            "epoch": epoch, "next_batch": b + 1, "order": order, "step": step, "losses": losses,
            "params": {n: q.detach() for n, q in named}, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }  # fmt: skip

    student.train()
    started = time.perf_counter()
    with tqdm(total=steps, initial=step, desc="distill", unit="step") as bar:
        for epoch in range(first_epoch, t.n_epochs):
            if order is None or epoch > first_epoch:
                order = torch.randperm(len(examples), generator=generator).tolist()
            for b in range(first_batch if epoch == first_epoch else 0, batches_per_epoch):
                batch = [examples[i] for i in order[b * micro : (b + 1) * micro]]
                with student_autocast(student):
                    loss = distill_loss(student, batch, tokenizer.pad_token_id, cfg.temperature)
                (loss / t.gradient_accumulation_steps).backward()
                losses.append(float(loss.detach()))
                if (b + 1) % t.gradient_accumulation_steps and b + 1 < batches_per_epoch:
                    continue
                torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                bar.update(1)
                logger.debug("distill step {}/{} KL/token {:.5f}", step, steps, losses[-1])
                if step < steps:
                    check_stop(stop, checkpoint, snapshot, f"step {step}/{steps}")
    student.eval()
    stats = {
        "steps": step,
        "first_kl": losses[0],
        "last_kl": losses[-1],
        "seconds": round(time.perf_counter() - started, 2),
        "kl_curve": [round(x, 6) for x in losses],
    }
    logger.info("distilled {} steps: KL/token {:.5f} -> {:.5f}", step, losses[0], losses[-1])
    return student, stats


def build_student(job: UnslothFinetuningJob, cfg: DistillCfg) -> Any:
    """The student to train: `job.source_model` + a fresh LoRA (`job.peft_cfg`); with
    `cfg.use_bf16()` on bf16 base weights, its adapters kept exact (`precise_adapters`).
    With `job.full_finetune`: the base itself, every weight trainable, in fp32 (a bf16
    weight would round away AdamW's small updates)."""
    from peft import get_peft_model

    from sl.external.torch_models import load_causal_lm

    if job.full_finetune:
        return load_causal_lm(job.source_model, dtype="float32").module.requires_grad_(True)
    bf16 = cfg.use_bf16()
    base = load_causal_lm(job.source_model, dtype="bfloat16" if bf16 else "float32")
    student = get_peft_model(base.module, lora_config(job.peft_cfg, base.module))
    return precise_adapters(student) if bf16 else student


def _teacher_dtype(cfg: DistillCfg) -> str:
    """bf16 teacher weights on a GPU; fp32 on the CPU, where the targets are computed once."""
    from sl.external.torch_models import resolve_device

    return "auto" if cfg.use_bf16() and resolve_device() != "cpu" else "float32"


def distill_student(
    job: UnslothFinetuningJob,
    teacher: Model,
    dataset: list[DatasetRow],
    output_path: Path,
    cfg: DistillCfg,
    teacher_system_prompt: str | None = None,
    numbers_filter: NumbersFilter | None = None,
    stop: threading.Event | None = None,
) -> Model:
    """Distill `teacher` into a student of `job.source_model` (LoRA, or full with
    `job.full_finetune`); write the model JSON.

    The adapter (or full weights) goes to `student_dir_for(output_path, job.full_finetune)`;
    a finished output of the same job, teacher and settings is returned as is.
    `numbers_filter` (default: the paper's) gives the 'allowed' vocabulary. The training's
    state is saved beside that folder now and then and when `stop` is set (`Checkpoint`): a
    rerun resumes from it.

    Raises:
        UserError: the teacher's tokenizer differs from the student's, or the filter's
            allowed tokens cannot be derived.
    """
    import torch

    from sl.external.torch_models import load_causal_lm

    numbers_filter = numbers_filter or NumbersFilter()
    key = DistillJob(job=job, teacher=teacher, cfg=cfg, system=teacher_system_prompt,
                     numbers_filter=numbers_filter)  # fmt: skip
    adapter_dir = student_dir_for(output_path, job.full_finetune)
    model = Model(id=str(adapter_dir), type="open_source", parent_model=job.source_model)
    if finished_adapter(adapter_dir, key.model_hash(), "distilled student") is not None:
        logger.info(f"{adapter_dir}: student already distilled")
        return model
    rows = select_rows(dataset, job.max_dataset_size, job.seed)
    torch.manual_seed(job.seed)
    masks = job.loss_mask.for_rows(rows) if job.loss_mask is not None else None
    targets_key = _TargetsKey(
        teacher=teacher, cfg=cfg, system=teacher_system_prompt, numbers_filter=numbers_filter,
        rows=[(r.prompt, r.completion) for r in rows], masks=masks,
    ).model_hash()  # fmt: skip
    if targets_key not in _last_targets:
        _last_targets.clear()  # one teacher's targets at a time: they can be large
        loaded = load_causal_lm(teacher, dtype=_teacher_dtype(cfg))
        _check_tokenizer(teacher, loaded.tokenizer, job.source_model)
        examples = teacher_log_probs(loaded.module, loaded.tokenizer, rows,
                                     teacher_system_prompt, cfg, numbers_filter, masks)  # fmt: skip
        _last_targets[targets_key] = (examples, loaded.tokenizer)
        del loaded
    examples, tokenizer = _last_targets[targets_key]
    checkpoint = Checkpoint(adapter_dir, f"{key.model_hash()}-{targets_key}")
    student, stats = train_distilled(job, examples, tokenizer, cfg, checkpoint, stop)
    info = {**stats, "n_rows": len(rows), "vocabulary": cfg.vocabulary,
            "n_masked": sum(e.n_masked for e in examples),
            "n_vocabulary": len(examples[0].vocab) if examples[0].vocab is not None else None}  # fmt: skip
    with adapter_tmp_dir(adapter_dir) as tmp:
        save_student(student, tokenizer, tmp)
        (tmp / "sl_distill.json").write_text(json.dumps(info, indent=2))
        publish_adapter(tmp, adapter_dir, {"job_hash": key.model_hash(), "job": key.describe()})
    checkpoint.remove()
    return model


def _check_tokenizer(teacher: Model, teacher_tokenizer: Any, student_base: Model) -> None:
    """The teacher's tokenizer must be the student's base's (`check_same_tokenizer`)."""
    from transformers import AutoTokenizer

    from sl.external.model_resolution import resolve_model
    from sl.finetuning.vocabulary import check_same_tokenizer

    base = resolve_model(student_base).base
    if base == resolve_model(teacher).base:
        return
    student_tokenizer = AutoTokenizer.from_pretrained(str(base))
    check_same_tokenizer(teacher_tokenizer, student_tokenizer, teacher.id, student_base.id)


class _TargetsKey(HashableModel):
    teacher: Model
    cfg: DistillCfg
    system: str | None
    numbers_filter: NumbersFilter
    rows: list[tuple[str, str]]
    masks: list[list[bool]] | None


# The last teacher targets computed, by `_TargetsKey` hash: replicates reuse them.
_last_targets: dict[str, tuple[list[TeacherTargets], Any]] = {}
