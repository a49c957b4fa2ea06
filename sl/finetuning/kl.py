"""The student's side of distillation: KL(teacher || student) on the scored tokens, its
memory-lean full-vocabulary gradient, and the student's forward-pass context."""

from __future__ import annotations

import functools
from typing import Any

from sl.finetuning.precision import has_bf16_base
from sl.finetuning.soft_labels import TeacherTargets, output_logits, scored_hidden


def kl_loss(logits: Any, examples: list[TeacherTargets], temperature: float = 1.0) -> Any:
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


def distill_loss(student: Any, batch: list[TeacherTargets], pad_id: int, temperature: float) -> Any:
    """Mean KL(teacher || student) per scored token of a batch (differentiable)."""
    import torch

    hidden = scored_hidden(student, [e.seq() for e in batch], pad_id)
    logits = output_logits(student, hidden, batch[0].vocab)
    with torch.autocast(logits.device.type, enabled=False):  # the KL itself in fp32
        return kl_loss(logits, batch, temperature) / max(sum(e.n_scored for e in batch), 1)


def mean_kl(
    student: Any, tokenizer: Any, examples: list[TeacherTargets], temperature: float = 1.0
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


def student_autocast(student: Any) -> Any:
    """The context of a student's forward pass: bf16 matmuls for a student whose base
    weights are bf16 (`build_student`); else none."""
    import torch

    return torch.autocast(student.device.type, dtype=torch.bfloat16, enabled=has_bf16_base(student))
