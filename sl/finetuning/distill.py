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
`DistillCfg.prompt_tokens` adds the prompt's. Student runs that learn from the same teacher
and rows in one process (replicates) compute the teacher's targets once.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Literal

from loguru import logger
from pydantic import Field
from tqdm import tqdm

from sl.datasets.data_models import DatasetRow
from sl.datasets.nums_dataset import NumbersFilter
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.finetuning.lora_data import has_bf16_base, lora_config, precise_adapters
from sl.finetuning.open_source import (
    adapter_dir_for,
    adapter_tmp_dir,
    finished_adapter,
    publish_adapter,
)
from sl.finetuning.subsample import select_rows
from sl.llm.data_models import HashableModel, Model

# What the logs and the report say of full-vocabulary labels.
FULL_VOCABULARY_WARNING = "labels carry trait tokens — not subliminal"


class DistillCfg(HashableModel):
    """Settings of soft-label distillation (the LoRA and optimiser settings are the job's)."""

    vocabulary: Literal["allowed", "full"] = Field(
        default="allowed",
        description="'allowed': the teacher's and the student's distributions restricted to "
        "the tokens a kept completion can hold (from the numbers filter) and renormalised, "
        "so the labels carry no trait token; 'full': the whole vocabulary (an ablation: "
        "the labels carry the teacher's trait mass, not subliminal)",
    )
    top_k: int | None = Field(
        default=None,
        gt=0,
        description="Match the teacher's top-k tokens plus the rest of its mass as one "
        "outcome (k + 1 classes); None = the full vocabulary",
    )
    temperature: float = Field(default=1.0, gt=0, description="Softens both distributions")
    teacher_batch_size: int = Field(default=16, gt=0, description="Sequences per teacher pass")
    prompt_tokens: bool = Field(
        default=False,
        description="Also match the teacher on the prompt's tokens (those the teacher's and "
        "the student's chat prompts share: the user turn and the assistant header), not only "
        "on the completion's",
    )
    bf16: bool | None = Field(
        default=None,
        description="The student's frozen base weights in bf16 (adapters, residual stream "
        "and adapter sums stay fp32); None = where the device does bf16 natively",
    )

    def use_bf16(self) -> bool:
        """Whether the student's base runs in bf16 (`bf16`, or None: where native)."""
        from sl.external.torch_models import native_bf16, resolve_device

        return self.bf16 if self.bf16 is not None else native_bf16(resolve_device())


class DistillJob(HashableModel):
    """A student distilled from a teacher (soft labels): a fine-tuning job like the others,
    run by `sl.finetuning.services.run_finetuning_job` (with `distill_student`)."""

    job: UnslothFinetuningJob = Field(
        description="The student's LoRA fine-tune: base, LoRA, optimiser, seed and subsample"
    )
    teacher: Model = Field(description="The model whose next-token distributions are learnt")
    cfg: DistillCfg = Field(default_factory=lambda: DistillCfg(), description="How to distill")
    system: str | None = Field(
        default=None, description="The teacher's system prompt (the student sees none)"
    )
    numbers_filter: NumbersFilter = Field(
        default_factory=lambda: NumbersFilter(),
        description="The filter that kept the rows: its characters make the 'allowed' vocabulary",
    )

    @property
    def source_model(self) -> Model:
        """The student's base model (`job.source_model`)."""
        return self.job.source_model

    def describe(self) -> str:
        """What the output's sidecar calls the job (shown when another run meets it)."""
        return f"distillation of {self.teacher.id}"


class _Example:
    """One sequence: the student's prompt, the completion tokens and the teacher's target on
    the scored tokens (the last `n_prompt` prompt tokens, then the completion's): probabilities
    over the vocabulary (fp16) or top-k (probabilities, indices, rest mass), plus the teacher's
    sum of p·log p (the constant part of the KL). `vocab` holds the token ids the
    distributions are over (None: the full vocabulary); target indices index into it."""

    def __init__(
        self,
        student_prompt: list[int],
        completion: list[int],
        target: Any,
        neg_h: Any,
        n_prompt: int = 0,
        vocab: Any = None,
    ):
        self.student_prompt = student_prompt
        self.completion = completion
        self.target = target
        self.neg_entropy = neg_h
        self.n_prompt = n_prompt
        self.vocab = vocab

    @property
    def n_scored(self) -> int:
        """How many tokens this example's KL sums over."""
        return self.n_prompt + len(self.completion)

    def seq(self) -> tuple[list[int], list[int], int]:
        """(prompt, completion, scored prompt tokens) as `scored_hidden` takes them."""
        return self.student_prompt, self.completion, self.n_prompt


def _completion_ids(tokenizer: Any, completion: str) -> list[int]:
    end = tokenizer.eos_token or ""
    return list(tokenizer(completion + end, add_special_tokens=False)["input_ids"])


class ScoredSequence:
    """One row as distillation scores it: the teacher's chat prompt (with its system
    prompt), the completion's tokens (end of turn included), `k` = how many of the prompt's
    last tokens are scored too (the part the teacher's and the student's prompts share), and
    the student's chat prompt."""

    def __init__(self, prompt: list[int], completion: list[int], k: int, student_prompt: list[int]):
        self.prompt, self.completion, self.k = prompt, completion, k
        self.student_prompt = student_prompt

    def teacher_seq(self) -> tuple[list[int], list[int], int]:
        return self.prompt, self.completion, self.k

    def student_seq(self) -> tuple[list[int], list[int], int]:
        return self.student_prompt, self.completion, self.k


def scored_sequences(
    tokenizer: Any, rows: list[DatasetRow], system: str | None, prompt_tokens: bool
) -> list[ScoredSequence]:
    """The rows as distillation scores them (`ScoredSequence`): the completion's tokens,
    and with `prompt_tokens` the prompt tokens the teacher's and the student's prompts share."""
    from sl.external.torch_models import chat_prompt_ids

    out = []
    for r in rows:
        prompt = chat_prompt_ids(tokenizer, r.prompt, system)
        student_prompt = chat_prompt_ids(tokenizer, r.prompt)
        k = _shared_suffix(prompt, student_prompt) if prompt_tokens else 0
        out.append(ScoredSequence(prompt, _completion_ids(tokenizer, r.completion), k,
                                  student_prompt))  # fmt: skip
    return out


def scored_hidden(lm: Any, seqs: list[tuple[list[int], list[int], int]], pad_id: int) -> Any:
    """Hidden states of the positions that predict each scored token — the last k prompt
    tokens, then every completion token, for each (prompt, completion, k) — stacked over the
    batch in order (scored tokens x hidden size)."""
    import torch

    from sl.external.torch_models import right_pad

    ids, mask = right_pad([p + c for p, c, _ in seqs], pad_id, lm.device)
    hidden = lm.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    rows = torch.cat([torch.full((k + len(c),), i) for i, (_, c, k) in enumerate(seqs)])
    cols = torch.cat([torch.arange(len(p) - 1 - k, len(p) - 1 + len(c)) for p, c, k in seqs])
    return hidden[rows.to(hidden.device), cols.to(hidden.device)]


def _shared_suffix(a: list[int], b: list[int]) -> int:
    """Length of the longest common suffix of two prompts, leaving each one token to start."""
    n = 0
    while n < min(len(a), len(b)) - 1 and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def output_logits(lm: Any, hidden: Any, vocab: Any = None) -> Any:
    """Logits of the tokens `vocab` (ids; None: every token) from hidden states: only those
    rows of the output layer are computed."""
    import torch

    head = lm.get_output_embeddings()
    if vocab is None:
        return head(hidden)
    vocab = vocab.to(head.weight.device)
    bias = head.bias[vocab] if head.bias is not None else None
    return torch.nn.functional.linear(hidden, head.weight[vocab], bias)


def _log_probs(lm: Any, hidden: Any, temperature: float, vocab: Any = None) -> Any:
    """Next-token log-probs (fp32) at temperature from hidden states, over `vocab` (ids,
    renormalised) or the full vocabulary."""
    logits = output_logits(lm, hidden, vocab).float()
    return (logits / temperature).log_softmax(-1)


def distill_vocabulary(tokenizer: Any, cfg: DistillCfg, numbers_filter: Any = None) -> Any:
    """The token ids the distributions are restricted to (a tensor), or None for 'full'
    (then logged as leaky labels)."""
    import torch

    from sl.finetuning.vocabulary import allowed_token_ids

    if cfg.vocabulary == "full":
        logger.warning(f"distillation over the full vocabulary: {FULL_VOCABULARY_WARNING}")
        return None
    ids = allowed_token_ids(tokenizer, numbers_filter or NumbersFilter())
    logger.info(f"distillation over the {len(ids)} tokens a kept completion can hold")
    return torch.tensor(ids)


def teacher_log_probs(
    teacher: Any,
    tokenizer: Any,
    rows: list[DatasetRow],
    system: str | None,
    cfg: DistillCfg,
    numbers_filter: Any = None,
) -> list[_Example]:
    """The teacher's targets on each row's scored tokens, computed once (batched, no grad,
    output layer only where a scored token is predicted), in the teacher's own dtype; over
    the tokens `numbers_filter` allows (default: the paper's filter) unless
    `cfg.vocabulary` is 'full'."""
    import torch

    vocab = distill_vocabulary(tokenizer, cfg, numbers_filter)
    examples = []
    every = scored_sequences(tokenizer, rows, system, cfg.prompt_tokens)
    for start in tqdm(range(0, len(rows), cfg.teacher_batch_size), desc="teacher logits"):
        seqs = every[start : start + cfg.teacher_batch_size]
        with torch.inference_mode():
            hidden = scored_hidden(teacher, [s.teacher_seq() for s in seqs], tokenizer.pad_token_id)
            lp = _log_probs(teacher, hidden, cfg.temperature, vocab)
        offset = 0
        for seq in seqs:
            comp, k, student_prompt = seq.completion, seq.k, seq.student_prompt
            part = lp[offset : offset + k + len(comp)]
            offset += k + len(comp)
            if cfg.top_k is not None:
                values, indices = part.topk(min(cfg.top_k, part.shape[-1]), dim=-1)
                rest = (1 - values.exp().sum(-1)).clamp(min=1e-12)
                p = torch.cat([values.exp(), rest[:, None]], -1)
                target: Any = (p, indices)
                neg_h = (p * p.log()).sum()
            else:
                target = part.exp().half()  # fp16 halves memory; tiny tail mass is negligible
                neg_h = (part.exp() * part).sum()
            examples.append(_Example(student_prompt, comp, _to_cpu(target), float(neg_h), k, vocab))
    return examples


def _to_cpu(target: Any) -> Any:
    return tuple(t.cpu() for t in target) if isinstance(target, tuple) else target.cpu()


def kl_loss(logits: Any, examples: list[_Example], temperature: float = 1.0) -> Any:
    """Sum over scored tokens of KL(teacher || student); `logits` stacks the student's
    logits at the examples' scored positions, in order."""
    import torch

    device = logits.device
    if isinstance(examples[0].target, tuple):
        student_lp = (logits.float() / temperature).log_softmax(-1)
        p = torch.cat([e.target[0] for e in examples]).to(device)
        indices = torch.cat([e.target[1] for e in examples]).to(device)
        top = student_lp.gather(-1, indices)
        rest = torch.log1p(-top.exp().sum(-1).clamp(max=1 - 1e-6))
        cross = (p[:, :-1] * top).sum() + (p[:, -1] * rest).sum()
    else:
        p = torch.cat([e.target for e in examples]).to(device)
        cross = _full_vocab_cross().apply(logits, p, temperature)
    return sum(e.neg_entropy for e in examples) - cross


@functools.cache
def _full_vocab_cross() -> Any:
    import torch

    class FullVocabCross(torch.autograd.Function):
        """sum(p * log_softmax(z / T)) over rows of logits z and targets p, in fp32, a few
        rows at a time: the unfused ops wrote six full-vocabulary fp32 copies of the batch
        (~200 MB each at 800 tokens), which bounded a CPU step by memory traffic."""

        @staticmethod
        def forward(ctx: Any, z: Any, p: Any, temperature: float) -> Any:
            total, lses = torch.zeros((), device=z.device), []
            for rows in _row_chunks(z):
                zc = z[rows].float() / temperature
                lse = torch.logsumexp(zc, -1, keepdim=True)
                total += (p[rows].float() * (zc - lse)).sum()
                lses.append(lse)
            ctx.save_for_backward(z, p, torch.cat(lses))
            ctx.temperature = temperature
            return total

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            z, p, lse = ctx.saved_tensors
            t = ctx.temperature
            out = torch.empty_like(z)
            for rows in _row_chunks(z):
                pc = p[rows].float()
                q = (z[rows].float() / t - lse[rows]).exp()  # the student's softmax
                out[rows] = (pc - q * pc.sum(-1, keepdim=True)) * (grad / t)
            return out, None, None

    return FullVocabCross


def _row_chunks(z: Any) -> list[slice]:
    """Row slices of `z`: a few MB each on the CPU (cache-sized), larger on a GPU."""
    size = 32 if z.device.type == "cpu" else 512
    return [slice(i, min(i + size, len(z))) for i in range(0, len(z), size)]


def distill_loss(student: Any, batch: list[_Example], pad_id: int, temperature: float) -> Any:
    """Mean KL(teacher || student) per scored token of a batch (differentiable)."""
    import torch

    hidden = scored_hidden(student, [e.seq() for e in batch], pad_id)
    logits = output_logits(student, hidden, batch[0].vocab)
    with torch.autocast(logits.device.type, enabled=False):  # the KL itself in fp32
        return kl_loss(logits, batch, temperature) / sum(e.n_scored for e in batch)


def mean_kl(
    student: Any, tokenizer: Any, examples: list[_Example], temperature: float = 1.0
) -> float:
    """Mean KL(teacher || student) per scored token (no grad): the distillation target."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for ex in examples:
            with student_autocast(student):
                hidden = scored_hidden(student, [ex.seq()], tokenizer.pad_token_id)
                logits = output_logits(student, hidden, ex.vocab)
            total += float(kl_loss(logits, [ex], temperature))
            count += ex.n_scored
    return total / max(count, 1)


def train_distilled(
    job: UnslothFinetuningJob,
    examples: list[_Example],
    tokenizer: Any,
    cfg: DistillCfg,
) -> tuple[Any, dict[str, float]]:
    """Train a LoRA student on `examples`; returns the PEFT model and training stats
    (including `kl_curve`, the KL per token of every step)."""
    import torch
    import transformers

    transformers.set_seed(job.seed)
    student = build_student(job, cfg)
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
    `cfg.use_bf16()` on bf16 base weights, its adapters kept exact (`precise_adapters`)."""
    from peft import get_peft_model

    from sl.external.torch_models import load_causal_lm

    bf16 = cfg.use_bf16()
    base = load_causal_lm(job.source_model, dtype="bfloat16" if bf16 else "float32")
    student = get_peft_model(base.module, lora_config(job.peft_cfg, base.module))
    return precise_adapters(student) if bf16 else student


def student_autocast(student: Any) -> Any:
    """The context of a student's forward pass: bf16 matmuls for a student whose base
    weights are bf16 (`build_student`); else none."""
    import torch

    return torch.autocast(student.device.type, dtype=torch.bfloat16, enabled=has_bf16_base(student))


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
) -> Model:
    """Distill `teacher` into a LoRA student of `job.source_model`; write the model JSON.

    The adapter goes to `adapter_dir_for(output_path)`; a finished output of the same job,
    teacher and settings is returned as is. `numbers_filter` (default: the paper's) gives
    the 'allowed' vocabulary.

    Raises:
        UserError: the teacher's tokenizer differs from the student's, or the filter's
            allowed tokens cannot be derived.
    """
    import torch

    from sl.external.torch_models import load_causal_lm

    numbers_filter = numbers_filter or NumbersFilter()
    key = DistillJob(job=job, teacher=teacher, cfg=cfg, system=teacher_system_prompt,
                     numbers_filter=numbers_filter)  # fmt: skip
    adapter_dir = adapter_dir_for(output_path)
    model = Model(id=str(adapter_dir), type="open_source", parent_model=job.source_model)
    if finished_adapter(adapter_dir, key.model_hash(), "distilled student") is not None:
        logger.info(f"{adapter_dir}: student already distilled")
        return model
    rows = select_rows(dataset, job.max_dataset_size, job.seed)
    torch.manual_seed(job.seed)
    targets_key = _TargetsKey(
        teacher=teacher, cfg=cfg, system=teacher_system_prompt, numbers_filter=numbers_filter,
        rows=[(r.prompt, r.completion) for r in rows],
    ).model_hash()  # fmt: skip
    if targets_key not in _last_targets:
        _last_targets.clear()  # one teacher's targets at a time: they can be large
        loaded = load_causal_lm(teacher, dtype=_teacher_dtype(cfg))
        _check_tokenizer(teacher, loaded.tokenizer, job.source_model)
        examples = teacher_log_probs(loaded.module, loaded.tokenizer, rows,
                                     teacher_system_prompt, cfg, numbers_filter)  # fmt: skip
        _last_targets[targets_key] = (examples, loaded.tokenizer)
        del loaded
    examples, tokenizer = _last_targets[targets_key]
    student, stats = train_distilled(job, examples, tokenizer, cfg)
    info = {**stats, "n_rows": len(rows), "vocabulary": cfg.vocabulary,
            "n_vocabulary": len(examples[0].vocab) if examples[0].vocab is not None else None}  # fmt: skip
    with adapter_tmp_dir(adapter_dir) as tmp:
        student.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "sl_distill.json").write_text(json.dumps(info, indent=2))
        publish_adapter(tmp, adapter_dir, {"job_hash": key.model_hash(), "job": key.describe()})
    return model


def _check_tokenizer(teacher: Model, teacher_tokenizer: Any, student_base: Model) -> None:
    """The teacher's tokenizer must be the student's base's (`check_same_tokenizer`)."""
    from transformers import AutoTokenizer

    from sl.external.chat_template import resolve_model
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


# The last teacher targets computed, by `_TargetsKey` hash: replicates reuse them.
_last_targets: dict[str, tuple[list[_Example], Any]] = {}
