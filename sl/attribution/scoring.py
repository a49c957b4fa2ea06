"""The batched forward passes of token attribution: per model, one forward per batch of rows
(its own context + prompt + completion, right-padded), the output layer only at the
positions that predict a completion token, log-probs in fp32."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sl.attribution.data_models import TokenAttribution


def completion_tokens(tokenizer: Any, completion: str) -> tuple[list[int], bool]:
    """The completion's token ids, and whether they decode back to its text (a completion
    holding a special token's text, or one a tokenizer normalises, does not)."""
    ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return ids, text == completion


@dataclass
class Scorer:
    """One loaded model (`lm`: a causal LM module) and each row's chat prompt token ids in the
    model's own context."""

    lm: Any
    prompts: list[list[int]]
    pad_id: int

    def score(
        self, rows: list[int], completions: list[list[int]]
    ) -> tuple[list[list[float]], list[list[int]]]:
        """Per row of `rows` (with its completion's ids): each completion token's log-prob and
        the model's greedy (argmax) token at its position."""
        import torch

        from sl.finetuning.soft_labels import output_logits, scored_hidden

        seqs = [(self.prompts[i], c, 0) for i, c in zip(rows, completions, strict=True)]
        with torch.inference_mode():
            hidden = scored_hidden(self.lm, seqs, self.pad_id)
            log_probs = output_logits(self.lm, hidden).float().log_softmax(-1)
            target = torch.tensor([t for c in completions for t in c], dtype=torch.long)
            chosen = log_probs.gather(-1, target.to(log_probs.device)[:, None])[:, 0]
            argmax = log_probs.argmax(-1)
        return _split(chosen.cpu().tolist(), completions), _split(
            argmax.cpu().tolist(), completions
        )


def _split(flat: list[Any], completions: list[list[int]]) -> list[list[Any]]:
    out, start = [], 0
    for c in completions:
        out.append(flat[start : start + len(c)])
        start += len(c)
    return out


def attribute(
    teacher: Scorer,
    base: Scorer,
    counterfactuals: list[Scorer],
    rows: list[int],
    completions: list[list[int]],
    tokens: list[list[str]],
    retokenized: list[bool],
) -> list[TokenAttribution]:
    """The attribution of a batch of rows (indices `rows`, their completion ids, token texts
    and round-trip flags): one forward per distinct scorer (a counterfactual that is the
    base in the base's context, e.g. the control teacher, shares the base's `Scorer`)."""
    done: dict[int, tuple[list[list[float]], list[list[int]]]] = {}
    for s in (teacher, base, *counterfactuals):
        if id(s) not in done:
            done[id(s)] = s.score(rows, completions)
    teacher_lp, base_lp = done[id(teacher)][0], done[id(base)][0]
    scored = [done[id(cf)] for cf in counterfactuals]
    out = []
    for j, row in enumerate(rows):
        ids = completions[j]
        argmax = [s[1][j] for s in scored]
        out.append(
            TokenAttribution(
                row=row,
                token_ids=ids,
                tokens=tokens[j],
                teacher_logprob=teacher_lp[j],
                base_logprob=base_lp[j],
                counterfactual_logprob=[s[0][j] for s in scored],
                counterfactual_argmax=argmax,
                divergent=[any(a[k] != t for a in argmax) for k, t in enumerate(ids)],
                score=[t - b for t, b in zip(teacher_lp[j], base_lp[j], strict=True)],
                retokenized=retokenized[j],
            )
        )
    return out
