"""The teacher's side of distillation: which tokens are scored, over which vocabulary, and
the teacher's targets there (`teacher_log_probs`), computed once per teacher and rows."""

from __future__ import annotations

from typing import Any

from loguru import logger

from sl.datasets.data_models import DatasetRow
from sl.datasets.nums_dataset import NumbersFilter
from sl.finetuning.distill_cfg import FULL_VOCABULARY_WARNING, DistillCfg
from sl.utils.progress_bar import tqdm


class TeacherTargets:
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
        n_masked: int = 0,
    ):
        self.student_prompt = student_prompt
        self.completion = completion
        self.target = target
        self.neg_entropy = neg_h
        self.n_prompt = n_prompt
        self.vocab = vocab
        self.n_masked = n_masked

    @property
    def n_scored(self) -> int:
        """How many tokens this example's KL sums over (masked tokens have zero targets)."""
        return self.n_prompt + len(self.completion) - self.n_masked

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
    masks: list[list[bool]] | None = None,
) -> list[TeacherTargets]:
    """The teacher's targets on each row's scored tokens, computed once (batched, no grad,
    output layer only where a scored token is predicted), in the teacher's own dtype; over
    the tokens `numbers_filter` allows (default: the paper's filter) unless
    `cfg.vocabulary` is 'full'. `masks` (per row, a flag per completion token before the end
    of turn: `LossMask`) and `cfg.completion_tokens=False` (every completion token) zero the
    targets of masked tokens: they add nothing to the KL and get no gradient."""
    import torch

    vocab = distill_vocabulary(tokenizer, cfg, numbers_filter)
    end = 1 if tokenizer.eos_token else 0  # `_completion_ids` appends the end of turn
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
            row = len(examples)  # the row's index in `rows`
            keep = _kept(k, len(comp), None if masks is None else masks[row], cfg, row, end)
            keep = keep.to(part.device)[:, None]
            if cfg.top_k is not None:
                values, indices = part.topk(min(cfg.top_k, part.shape[-1]), dim=-1)
                rest = (1 - values.exp().sum(-1)).clamp(min=1e-12)
                p = torch.cat([values.exp(), rest[:, None]], -1)
                target: Any = (p * keep, indices)
                neg_h = (p * p.log() * keep).sum()
            else:
                # fp16 halves memory; tiny tail mass is negligible
                target = (part.exp() * keep).half()
                neg_h = (part.exp() * part * keep).sum()
            n_masked = int((~keep).sum())
            examples.append(TeacherTargets(student_prompt, comp, _to_cpu(target), float(neg_h),
                                           k, vocab, n_masked))  # fmt: skip
    return examples


def _kept(n_prompt: int, n_completion: int, mask: list[bool] | None, cfg: DistillCfg,
          row: int, n_end: int) -> Any:  # fmt: skip
    """Which scored tokens of a row count: the prompt's, and the completion's unless masked
    (the end of turn counts unless every completion token is masked)."""
    import torch

    from sl.finetuning.loss_mask import check_mask_length

    keep = torch.ones(n_prompt + n_completion, dtype=torch.bool)
    if not cfg.completion_tokens:
        keep[n_prompt:] = False
    elif mask is not None:
        check_mask_length(mask, n_completion - n_end, row)
        keep[n_prompt : n_prompt + len(mask)] = ~torch.tensor(mask, dtype=torch.bool)
    return keep


def _to_cpu(target: Any) -> Any:
    return tuple(t.cpu() for t in target) if isinstance(target, tuple) else target.cpu()
