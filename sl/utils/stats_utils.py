"""The original code's `sl.utils.stats_utils` names, over `sl.utils.stats`.

`compute_ci` is the Student-t interval of `mean_ci` for every n (the original switched to a
normal interval above n = 30, which is slightly narrower); `compute_bernoulli_ci` is the
Wilson score interval, as in the original. Both return `CI`, which also takes and answers
to the original field names `lower_bound`, `upper_bound` and `count`. `compute_ci_df` gives
one row per group with the original's columns.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from sl.errors import UserError
from sl.utils.stats import CI, mean_ci, wilson_ci

__all__ = ["CI", "compute_bernoulli_ci", "compute_ci", "compute_ci_df"]


def compute_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> CI:
    """Mean of `values` with a two-sided t confidence interval (e.g. a pandas Series)."""
    return mean_ci(np.asarray(values, dtype=float), confidence)


def compute_bernoulli_ci(values: Sequence[bool] | np.ndarray, confidence: float = 0.95) -> CI:
    """Proportion of true values with a Wilson score confidence interval."""
    return wilson_ci(np.asarray(values, dtype=bool), confidence)


def compute_ci_df(
    df: Any, group_cols: str | list[str], value_col: str, confidence: float = 0.95
) -> Any:
    """One row per group of the pandas DataFrame `df`: the confidence interval of
    `value_col` (Wilson for a bool column, else t) as columns `mean`, `lower_bound`,
    `upper_bound`, `count`, `confidence`, then the group columns."""
    import pandas as pd

    columns = [group_cols] if isinstance(group_cols, str) else list(group_cols)
    missing = [c for c in [*columns, value_col] if c not in df.columns]
    if missing:
        raise UserError(
            f"compute_ci_df: no column {missing[0]!r}: columns: {', '.join(df.columns)}"
        )
    ci_of = compute_bernoulli_ci if df[value_col].dtype == bool else compute_ci
    rows = []
    for names, group in df.groupby(columns):
        ci = ci_of(group[value_col].to_numpy(), confidence)
        row = {
            "mean": ci.mean,
            "lower_bound": ci.lower,
            "upper_bound": ci.upper,
            "count": ci.n,
            "confidence": ci.confidence,
        }
        rows.append({**row, **dict(zip(columns, names, strict=True))})
    return pd.DataFrame(rows)
