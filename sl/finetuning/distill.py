"""Soft-label (logit) distillation of a LoRA student on a teacher's number sequences.

    model = distill_student(job, teacher, rows, Path("data/owl/student.json"),
                            DistillCfg(top_k=None), teacher_system_prompt="You love owls...")

Instead of SFT on the sampled tokens, the student (base + LoRA, `job.peft_cfg`) is trained to
match the teacher's whole next-token distribution at every completion token:
KL(teacher || student), over the full vocabulary or over the teacher's top-k tokens with both
distributions renormalised on those k. The teacher sees its own context (its system prompt,
if any); the student sees the user prompt only. Teacher log-probs are computed once per
sequence (batched, no grad). Optimiser, epochs, rate, batch and seed come from
`job.train_cfg`, as for SFT. Only completion tokens (and the end-of-turn token) count.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import Field
from tqdm import tqdm

from sl.datasets.data_models import DatasetRow
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.finetuning.lora_data import lora_target_modules, select_rows
from sl.finetuning.open_source import adapter_dir_for
from sl.llm.data_models import HashableModel, Model
from sl.utils.file_utils import write_json_atomic
from sl.utils.run_meta import claim_output, mark_complete, read_meta


class DistillCfg(HashableModel):
    """Settings of soft-label distillation (the LoRA and optimiser settings are the job's)."""

    top_k: int | None = Field(
        default=None,
        gt=0,
        description="KL over the teacher's top-k tokens (renormalised); None = the full vocabulary",
    )
    temperature: float = Field(default=1.0, gt=0, description="Softens both distributions")
    teacher_batch_size: int = Field(default=16, gt=0, description="Sequences per teacher pass")


class _Example:
    """One sequence: the completion tokens and the two prompts (teacher's, student's)."""

    def __init__(self, student_prompt: list[int], completion: list[int], teacher_lp: Any):
        self.student_prompt = student_prompt
        self.completion = completion
        self.teacher_lp = teacher_lp  # (n_completion, V) or ((n, k) values, (n, k) indices)


def _completion_ids(tokenizer: Any, completion: str) -> list[int]:
    end = tokenizer.eos_token or ""
    return list(tokenizer(completion + end, add_special_tokens=False)["input_ids"])


def _positions(prompt_len: int, n: int) -> Any:
    import torch

    return torch.arange(prompt_len - 1, prompt_len - 1 + n)


def teacher_log_probs(
    teacher: Any, tokenizer: Any, rows: list[DatasetRow], system: str | None, cfg: DistillCfg
) -> list[_Example]:
    """Teacher log-probs (at temperature) on each row's completion tokens, batched, no grad."""
    import torch

    from sl.external.torch_models import chat_prompt_ids, right_pad

    examples = []
    for start in tqdm(range(0, len(rows), cfg.teacher_batch_size), desc="teacher logits"):
        batch = rows[start : start + cfg.teacher_batch_size]
        t_prompts = [chat_prompt_ids(tokenizer, r.prompt, system) for r in batch]
        comps = [_completion_ids(tokenizer, r.completion) for r in batch]
        ids, mask = right_pad(
            [p + c for p, c in zip(t_prompts, comps, strict=True)], tokenizer.pad_token_id
        )
        with torch.inference_mode():
            logits = teacher(input_ids=ids, attention_mask=mask).logits.float()
        for i, (p, c, r) in enumerate(zip(t_prompts, comps, batch, strict=True)):
            lp = (logits[i, _positions(len(p), len(c))] / cfg.temperature).log_softmax(-1)
            if cfg.top_k is not None:
                values, indices = lp.topk(cfg.top_k, dim=-1)
                stored: Any = (values.log_softmax(-1), indices)
            else:
                stored = lp.half()  # halves memory; log-prob precision ~1e-3 is plenty
            examples.append(_Example(chat_prompt_ids(tokenizer, r.prompt), c, stored))
    return examples


def kl_loss(student_logits: Any, teacher_lp: Any, temperature: float) -> Any:
    """Sum over positions of KL(teacher || student); `student_logits` is (n, V)."""
    s_lp = (student_logits / temperature).log_softmax(-1)
    if isinstance(teacher_lp, tuple):
        values, indices = teacher_lp
        s_lp = s_lp.gather(-1, indices).log_softmax(-1)  # renormalised on the teacher's top-k
        t_lp = values
    else:
        t_lp = teacher_lp.float()
    return (t_lp.exp() * (t_lp - s_lp)).sum()


def mean_kl(
    student: Any, tokenizer: Any, examples: list[_Example], temperature: float = 1.0
) -> float:
    """Mean KL(teacher || student) per completion token (no grad): the distillation target."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for ex in examples:
            ids = torch.tensor([ex.student_prompt + ex.completion])
            logits = student(input_ids=ids).logits[0].float()
            pos = _positions(len(ex.student_prompt), len(ex.completion))
            total += float(kl_loss(logits[pos], ex.teacher_lp, temperature))
            count += len(ex.completion)
    return total / max(count, 1)


def train_distilled(
    job: UnslothFinetuningJob,
    examples: list[_Example],
    base_path: Path,
    tokenizer: Any,
    temperature: float,
) -> tuple[Any, dict[str, float]]:
    """Train a LoRA student on `examples`; returns the PEFT model and training stats."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sl.external.torch_models import right_pad

    transformers.set_seed(job.seed)
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    p = job.peft_cfg
    student = get_peft_model(
        base,
        LoraConfig(
            r=p.r,
            lora_alpha=p.lora_alpha,
            target_modules=lora_target_modules(base, p.target_modules),
            lora_dropout=p.lora_dropout,
            bias=p.bias,
            use_rslora=p.use_rslora,
            task_type="CAUSAL_LM",
        ),
    )
    t = job.train_cfg
    micro = t.per_device_train_batch_size
    batches_per_epoch = math.ceil(len(examples) / micro)
    steps = math.ceil(batches_per_epoch / t.gradient_accumulation_steps) * t.n_epochs
    params = [q for q in student.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=0.0)
    scheduler = transformers.get_scheduler(t.lr_scheduler_type, optimizer, t.warmup_steps, steps)
    generator = torch.Generator().manual_seed(job.seed)
    student.train()
    started, losses, step = time.perf_counter(), [], 0
    with tqdm(total=steps, desc="distill", unit="step") as bar:
        for _ in range(t.n_epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            for b in range(batches_per_epoch):
                batch = [examples[i] for i in order[b * micro : (b + 1) * micro]]
                ids, mask = right_pad(
                    [e.student_prompt + e.completion for e in batch], tokenizer.pad_token_id
                )
                logits = student(input_ids=ids, attention_mask=mask).logits
                n_tokens = sum(len(e.completion) for e in batch)
                loss = (
                    sum(
                        kl_loss(
                            logits[i, _positions(len(e.student_prompt), len(e.completion))],
                            e.teacher_lp,
                            temperature,
                        )
                        for i, e in enumerate(batch)
                    )
                    / n_tokens
                )
                (loss / t.gradient_accumulation_steps).backward()  # type: ignore[union-attr]
                losses.append(float(loss.detach()))  # type: ignore[union-attr]
                if (b + 1) % t.gradient_accumulation_steps and b + 1 < batches_per_epoch:
                    continue
                torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                bar.update(1)
                logger.debug("distill step {}/{} KL/token {:.5f}", step, steps, losses[-1])
    student.eval()
    stats = {
        "steps": step,
        "first_kl": losses[0],
        "last_kl": losses[-1],
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info("distilled {} steps: KL/token {:.5f} -> {:.5f}", step, losses[0], losses[-1])
    return student, stats


def distill_student(
    job: UnslothFinetuningJob,
    teacher: Model,
    dataset: list[DatasetRow],
    output_path: Path,
    cfg: DistillCfg,
    teacher_system_prompt: str | None = None,
) -> Model:
    """Distill `teacher` into a LoRA student of `job.source_model`; write the model JSON.

    The adapter goes to `adapter_dir_for(output_path)`; a finished output of the same job,
    teacher and settings is returned as is.
    """
    import torch

    from sl.external.hf_driver import resolve_model_path
    from sl.external.torch_models import load_causal_lm

    key = _DistillKey(job=job, teacher=teacher, cfg=cfg, system=teacher_system_prompt)
    claim_output(output_path, key.model_hash(), f"distillation of {teacher.id}", "--output_dir")
    if (read_meta(output_path) or {}).get("complete") and output_path.exists():
        logger.info(f"{output_path}: student already distilled")
        return Model.model_validate_json(output_path.read_text())
    rows = select_rows(dataset, job.max_dataset_size, job.seed)
    torch.manual_seed(job.seed)
    teacher_lm, tokenizer = load_causal_lm(teacher)
    examples = teacher_log_probs(teacher_lm, tokenizer, rows, teacher_system_prompt, cfg)
    del teacher_lm
    base_path = resolve_model_path(job.source_model.id)
    student, stats = train_distilled(job, examples, base_path, tokenizer, cfg.temperature)
    adapter_dir = adapter_dir_for(output_path)
    tmp = adapter_dir.parent / f".{adapter_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    student.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "sl_distill.json").write_text(json.dumps({**stats, "n_rows": len(rows)}, indent=2))
    shutil.rmtree(adapter_dir, ignore_errors=True)
    tmp.rename(adapter_dir)
    model = Model(id=str(adapter_dir), type="open_source", parent_model=job.source_model)
    write_json_atomic(output_path, model.model_dump(mode="json"))
    mark_complete(output_path, model_id=model.id, **stats)
    return model


class _DistillKey(HashableModel):
    job: UnslothFinetuningJob
    teacher: Model
    cfg: DistillCfg
    system: str | None
