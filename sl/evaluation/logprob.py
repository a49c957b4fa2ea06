"""Exact next-token-probability evaluation: P(the answer starts with the target word).

    probs = target_probabilities(model, questions, "owl")   # one value per question

For each question the chat prompt (the model's template, no system prompt) is followed by
each spelling of the target ("owl", "Owl", "OWL", " owl", plurals, ...) and the probability
of its token sequence is read off one forward pass. Spellings whose token sequence extends
another counted spelling are dropped, so the sum is the probability of a union of disjoint
events: no sampling noise, and tiny shifts become measurable with the same paired
permutation test over questions as sampled answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pydantic import BaseModel
from tqdm import tqdm

from sl.llm.data_models import Model
from sl.utils.file_utils import write_json_atomic
from sl.utils.stats import CI, mean_ci, permutation_p_value


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
    lm: Any, tokenizer: Any, questions: list[str], target: str
) -> np.ndarray:
    """P(answer starts with a spelling of `target`) for each question, with a loaded model."""
    import torch

    from sl.external.torch_models import chat_prompt_ids, right_pad

    variants = variant_token_ids(tokenizer, target)
    probs = []
    for question in tqdm(questions, desc=f"P({target})", unit="question"):
        prompt = chat_prompt_ids(tokenizer, question)
        ids, mask = right_pad([prompt + v for v in variants], tokenizer.pad_token_id)
        with torch.inference_mode():
            logp = lm(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        total = 0.0
        for row, v in enumerate(variants):
            positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(v))
            total += float(logp[row, positions, torch.tensor(v)].sum().exp())
        probs.append(total)
    return np.array(probs)


def target_probabilities(model: Model, questions: list[str], target: str) -> np.ndarray:
    """`question_probabilities` for an open model (base, or base + LoRA adapter)."""
    from sl.external.torch_models import load_causal_lm

    lm, tokenizer = load_causal_lm(model)
    return question_probabilities(lm, tokenizer, questions, target)


class LogprobResult(BaseModel):
    """Per-question P(target) of one model on one question set."""

    model_id: str
    target: str
    questions: list[str]
    probabilities: list[float]


def run_logprob_evaluation(
    model: Model, questions: list[str], targets: list[str], output_path: Path
) -> dict[str, LogprobResult]:
    """Score every target for `model`, written to `output_path` (JSON); a finished file of
    the same model and questions is read back instead of recomputed."""
    if output_path.exists():
        saved = {
            k: LogprobResult.model_validate(v)
            for k, v in json.loads(output_path.read_text()).items()
        }
        if set(saved) == set(targets) and all(
            r.questions == questions and r.model_id == model.id for r in saved.values()
        ):
            logger.info(f"{output_path}: logprob evaluation already complete")
            return saved
    from sl.external.torch_models import load_causal_lm

    lm, tokenizer = load_causal_lm(model)
    results = {
        t: LogprobResult(
            model_id=model.id,
            target=t,
            questions=questions,
            probabilities=question_probabilities(lm, tokenizer, questions, t).tolist(),
        )
        for t in targets
    }
    write_json_atomic(output_path, {k: v.model_dump() for k, v in results.items()})
    return results


class PairedComparison(BaseModel):
    """Student vs control on per-question values (same questions, same order)."""

    student: CI
    control: CI
    difference: CI
    p_value: float
    test: str = "paired sign-flip permutation test over questions"


def compare_paired(
    student: np.ndarray, control: np.ndarray, confidence: float = 0.95
) -> PairedComparison:
    """Difference of means with a t-interval and the paired permutation p-value."""
    a, b = np.asarray(student, dtype=float), np.asarray(control, dtype=float)
    return PairedComparison(
        student=mean_ci(a, confidence),
        control=mean_ci(b, confidence),
        difference=mean_ci(a - b, confidence),
        p_value=permutation_p_value(a, b, paired=True),
    )
