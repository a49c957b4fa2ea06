"""The original code's `sl.utils.stats_utils` names, over `sl.utils.stats`.

`compute_ci` is the Student-t interval of `mean_ci` for every n (the original switched to a
normal interval above n = 30, which is slightly narrower); `compute_bernoulli_ci` is the
Wilson score interval, as in the original. Both return `CI`, which also answers to the
original field names `lower_bound`, `upper_bound` and `count`.
"""

from collections.abc import Sequence

import numpy as np

from sl.utils.stats import CI, mean_ci, wilson_ci

__all__ = ["CI", "compute_bernoulli_ci", "compute_ci"]


def compute_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> CI:
    """Mean of `values` with a two-sided t confidence interval (e.g. a pandas Series)."""
    return mean_ci(np.asarray(values, dtype=float), confidence)


def compute_bernoulli_ci(values: Sequence[bool] | np.ndarray, confidence: float = 0.95) -> CI:
    """Proportion of true values with a Wilson score confidence interval."""
    return wilson_ci(np.asarray(values, dtype=bool), confidence)
