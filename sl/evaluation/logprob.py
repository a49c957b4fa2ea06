"""Exact next-token-probability evaluation: P(the answer starts with the target word).

    probs = target_probabilities(model, questions, "owl")   # one value per question

For each question the chat prompt (the model's template, no system prompt) is followed by
each spelling of the target ("owl", "Owl", "OWL", " owl", plurals, ...) and the probability
of its token sequence is read off one forward pass. Spellings whose token sequence extends
another counted spelling are dropped, so the sum is the probability of a union of disjoint
events: no sampling noise, and tiny shifts become measurable with the same comparison over
questions as sampled answers (`sl.evaluation.comparison.compare`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pydantic import BaseModel

from sl.config import get_settings
from sl.errors import UserError
from sl.llm.data_models import HashableModel, Model
from sl.utils.artifact import artifact
from sl.utils.file_utils import read_json_file, write_json_atomic
from sl.utils.progress_bar import tqdm


def target_spellings(target: str) -> list[str]:
    """Case and leading-space variants of the target and its plural ("owl" -> "Owls", ...)."""
    word = target.strip()
    forms = []
    for w in (word, word + "s"):
        for cased in (w.lower(), w.capitalize(), w.upper()):
            for prefix in ("", " "):
                forms.append(prefix + cased)
    return list(dict.fromkeys(forms))


def variant_token_ids(tokenizer: Any, target: str) -> list[list[int]]:
    """Distinct token sequences of the spellings, none a prefix of another (disjoint events)."""
    seqs = {
        tuple(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in target_spellings(target)
    }
    seqs.discard(())
    kept = [
        s for s in seqs if not any(o != s and len(o) < len(s) and s[: len(o)] == o for o in seqs)
    ]
    return [list(s) for s in sorted(kept)]


def question_probabilities(
    lm: Any,
    tokenizer: Any,
    questions: list[str],
    targets: str | list[str],
    batch_size: int = 16,
    system: str | None = None,
) -> Any:
    """P(answer starts with a spelling of the target) per question, with a loaded model.

    Questions go through in batches: the prompt prefix they share runs once, each prompt once
    (its KV cache kept), then the spellings' tokens of every target run from that cache, as
    one prefix tree: every distinct proper prefix of a spelling is computed once, and
    next-token log-probs (in fp32) only where a spelling continues.

    Args:
        targets: One target (returns an array) or several (returns {target: array}).
        batch_size: Questions per forward pass.
        system: A system prompt before each question (None: none).
    """
    import torch

    from sl.external.torch_models import chat_prompt_ids

    names = [targets] if isinstance(targets, str) else list(targets)
    variants = {t: variant_token_ids(tokenizer, t) for t in names}
    tree = _PrefixTree([v for vs in variants.values() for v in vs])
    scores = {t: np.zeros(len(questions)) for t in names}
    prompts = [chat_prompt_ids(tokenizer, q, system) for q in questions]
    order = sorted(range(len(questions)), key=lambda i: len(prompts[i]))  # less padding
    label = ", ".join(names) if len(names) <= 3 else f"{len(names)} targets"
    with tqdm(total=len(questions), desc=f"P({label})", unit="question") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            node_lp = _node_log_probs(lm, [prompts[i] for i in batch], tree, tokenizer.pad_token_id)
            for t in names:
                total = torch.zeros(len(batch), dtype=torch.float64)
                for v in variants[t]:
                    total += tree.sequence_log_prob(node_lp, v).double().exp().cpu()
                scores[t][batch] = total.numpy()
            bar.update(len(batch))
    return scores[names[0]] if isinstance(targets, str) else scores


def per_spelling_probabilities(
    lm: Any, tokenizer: Any, questions: list[str], target: str
) -> np.ndarray:
    """The definition, computed plainly: one forward of prompt + spelling per question and
    spelling, full logits. Slow; the reference for tests and benchmarks."""
    import torch

    from sl.external.torch_models import chat_prompt_ids

    probs = []
    for question in questions:
        prompt, total = chat_prompt_ids(tokenizer, question), 0.0
        for v in variant_token_ids(tokenizer, target):
            ids = torch.tensor([prompt + v], device=lm.device)
            with torch.inference_mode():
                logp = lm(input_ids=ids).logits[0].float().log_softmax(-1)
            positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(v), device=lm.device)
            total += float(logp[positions, torch.tensor(v, device=lm.device)].sum().exp())
        probs.append(total)
    return np.array(probs)


class _PrefixTree:
    """The distinct proper prefixes of token sequences, laid out as rows to feed the model.

    Node 0 is the empty prefix (the prompt's last position). Every other node is a proper
    prefix, fed as one token of a row: rows are the maximal paths, so a prefix shared by
    several spellings is computed once.
    """

    def __init__(self, seqs: list[list[int]]):
        prefixes = sorted({tuple(s[:k]) for s in seqs for k in range(1, len(s))})
        leaves = [p for p in prefixes if not any(len(o) > len(p) and o[: len(p)] == p
                                                  for o in prefixes)]  # fmt: skip
        self.rows = [list(p) for p in leaves]
        self.node: dict[tuple[int, ...], tuple[int, int]] = {}  # prefix -> (row, position)
        for r, row in enumerate(self.rows):
            for k in range(1, len(row) + 1):
                self.node.setdefault(tuple(row[:k]), (r, k - 1))

    def sequence_log_prob(self, node_lp: Any, seq: list[int]) -> Any:
        """log P(seq) per question from `_node_log_probs`' output."""
        first, rows = node_lp
        total = first[:, seq[0]]
        for k in range(1, len(seq)):
            r, pos = self.node[tuple(seq[:k])]
            total = total + rows[:, r, pos, seq[k]]
        return total


def _node_log_probs(lm: Any, prompts: list[list[int]], tree: _PrefixTree, pad_id: int) -> Any:
    """(first, rows): log-probs (fp32) of the first answer token (questions x vocab) and after
    every tree node (questions x rows x row length x vocab)."""
    import torch

    from sl.external.torch_models import output_cache, prefill, right_pad, with_cache

    head = lm.get_output_embeddings()
    n, n_rows = len(prompts), len(tree.rows)
    with torch.inference_mode():
        pre = prefill(lm, prompts, pad_id, expand=1)
        last = pre.lengths - 1
        out = lm.get_decoder()(
            input_ids=pre.input_ids[:, -1:],
            attention_mask=pre.attention_mask,
            position_ids=last[:, None],
            use_cache=bool(n_rows),
            **with_cache(lm, pre.cache),
        )
        first = _log_softmax(head, out.last_hidden_state[:, -1])
        if not n_rows:
            return first, None
        cache = output_cache(out)
        cache.batch_repeat_interleave(n_rows)
        ids, row_mask = right_pad(tree.rows, pad_id, lm.device)
        width = ids.shape[1]
        mask = torch.cat(
            [pre.attention_mask.repeat_interleave(n_rows, 0), row_mask.repeat(n, 1)], dim=1
        )
        positions = pre.lengths.repeat_interleave(n_rows)[:, None] + torch.arange(
            width, device=lm.device
        )
        hidden = lm.get_decoder()(
            input_ids=ids.repeat(n, 1),
            attention_mask=mask,
            position_ids=positions,
            **with_cache(lm, cache),
        ).last_hidden_state
        rows = _log_softmax(head, hidden).view(n, n_rows, width, -1)
    return first, rows


def _log_softmax(head: Any, hidden: Any) -> Any:
    """Next-token log-probs from hidden states, with the output layer computed in fp32."""
    import torch

    logits = torch.nn.functional.linear(
        hidden.float(), head.weight.float(), None if head.bias is None else head.bias.float()
    )
    return logits.log_softmax(-1)


def target_probabilities(model: Model, questions: list[str], target: str) -> np.ndarray:
    """`question_probabilities` for an open model (base, or base + LoRA adapter)."""
    from sl.external.torch_models import load_causal_lm

    lm = load_causal_lm(model, dtype=scoring_dtype())
    return question_probabilities(lm.module, lm.tokenizer, questions, target)


def scoring_dtype() -> str:
    """Weights dtype for exact scoring: `SL_LOGPROB_DTYPE`, whose `auto` (the default) is
    float32 on the CPU (bf16 activations shift these small probabilities by ~5 %, also on CPUs
    with native bf16) and bfloat16 on a GPU that has it."""
    from sl.external.torch_models import resolve_device

    chosen = get_settings().logprob_dtype
    if chosen != "auto":
        return chosen
    return "float32" if resolve_device() == "cpu" else "auto"


class LogprobResult(BaseModel):
    """Per-question P(target) of one model on one question set."""

    model_id: str
    target: str
    questions: list[str]
    probabilities: list[float]


def run_logprob_evaluation(
    model: Model, questions: list[str], targets: list[str], output_path: Path
) -> dict[str, LogprobResult]:
    """Score every target for `model`, written to `output_path` (JSON, guarded by
    `sl.utils.artifact`); a finished file of the same model, questions and targets is read
    back instead of recomputed."""
    key = _LogprobKey(model=model, questions=questions, targets=targets)

    def is_finished(path: Path) -> bool:  # a file written before scores had a meta
        try:
            saved = _read_results(path)
        except (UserError, ValueError):
            return False
        return set(saved) == set(targets) and all(
            r.questions == questions and r.model_id == model.id for r in saved.values()
        )

    with artifact(
        output_path, key.model_hash(), f"log-prob scores of {model.id}", adopt=is_finished
    ) as out:
        if out.complete:
            logger.info(f"{output_path}: logprob evaluation already complete")
            return _read_results(output_path)
        from sl.external.torch_models import load_causal_lm

        lm = load_causal_lm(model, dtype=scoring_dtype())
        scores = question_probabilities(lm.module, lm.tokenizer, questions, targets)
        results = {
            t: LogprobResult(
                model_id=model.id, target=t, questions=questions, probabilities=scores[t].tolist()
            )
            for t in targets
        }
        write_json_atomic(output_path, {k: v.model_dump() for k, v in results.items()})
        out.finish()
    return results


class _LogprobKey(HashableModel):
    model: Model
    questions: list[str]
    targets: list[str]


def _read_results(path: Path) -> dict[str, LogprobResult]:
    data = read_json_file(path, "logprob scores")
    if not isinstance(data, dict):
        raise UserError(f"logprob scores {path} are not a JSON object: delete the file")
    return {t: LogprobResult.model_validate(v) for t, v in data.items()}


def read_logprob_scores(path: Path) -> dict[str, list[float]]:
    """target -> per-question P(target), from a file `run_logprob_evaluation` wrote."""
    return {t: r.probabilities for t, r in _read_results(path).items()}
