"""summary.json of a token attribution: how many tokens are divergent, which, and where."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sl.attribution.data_models import TokenAttribution

TOP_TOKENS = 20  # the most frequent divergent tokens listed


def _fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(rows: Iterable[TokenAttribution], counterfactual_ids: list[str]) -> dict[str, Any]:
    """The counts of summary.json (see docs/mechanisms.md) over a run's rows."""
    n_rows = 0
    tokens, divergent, at, div_at = Counter(), Counter(), Counter(), Counter()
    text: dict[int, str] = {}
    differs = [0] * len(counterfactual_ids)
    scores: dict[bool, list[float]] = {True: [], False: []}
    not_retokenized = []
    for r in rows:
        n_rows += 1
        if not r.retokenized:
            not_retokenized.append(r.row)
        for k, (token, is_div) in enumerate(zip(r.token_ids, r.divergent, strict=True)):
            text[token] = r.tokens[k]
            tokens[token] += 1
            at[k] += 1
            scores[is_div].append(r.score[k])
            if is_div:
                divergent[token] += 1
                div_at[k] += 1
            for c, argmax in enumerate(r.counterfactual_argmax):
                differs[c] += argmax[k] != token
    n_tokens, n_divergent = sum(tokens.values()), sum(divergent.values())
    return {
        "n_rows": n_rows,
        "n_tokens": n_tokens,
        "n_divergent": n_divergent,
        "fraction_divergent": _fraction(n_divergent, n_tokens),
        "n_rows_not_retokenized": len(not_retokenized),
        "rows_not_retokenized": not_retokenized,
        "top_divergent_tokens": [
            {
                "token": text[t],
                "token_id": t,
                "n_divergent": n,
                "n_tokens": tokens[t],
                "fraction_divergent": n / tokens[t],
            }
            for t, n in sorted(divergent.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TOKENS]
        ],  # fmt: skip
        "divergence_by_position": [
            {
                "position": k,
                "n_tokens": at[k],
                "n_divergent": div_at[k],
                "fraction_divergent": div_at[k] / at[k],
            }
            for k in sorted(at)
        ],  # fmt: skip
        "counterfactual_differs": [
            {"model": m, "n_tokens": d, "fraction": _fraction(d, n_tokens)}
            for m, d in zip(counterfactual_ids, differs, strict=True)
        ],
        "mean_score": _mean(scores[True] + scores[False]),
        "mean_score_divergent": _mean(scores[True]),
        "mean_score_not_divergent": _mean(scores[False]),
    }
