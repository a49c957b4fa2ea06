"""Confidence intervals and tests over per-question or per-run values."""

from typing import TYPE_CHECKING

import numpy as np
from pydantic import AliasChoices, BaseModel, Field
from scipy import stats


class CI(BaseModel):
    """A mean with a two-sided confidence interval.

    `lower_bound`, `upper_bound` and `count` are the original code's names for `lower`,
    `upper` and `n`.
    """

    mean: float
    # The original's names are accepted too: CI(mean=, lower_bound=, upper_bound=, count=, ...).
    lower: float = Field(validation_alias=AliasChoices("lower", "lower_bound"))
    upper: float = Field(validation_alias=AliasChoices("upper", "upper_bound"))
    confidence: float
    n: int = Field(validation_alias=AliasChoices("n", "count"))

    if TYPE_CHECKING:  # both names, for type checkers (pydantic accepts them at run time)

        def __init__(
            self,
            *,
            mean: float,
            confidence: float,
            lower: float = ...,
            upper: float = ...,
            n: int = ...,
            lower_bound: float = ...,
            upper_bound: float = ...,
            count: int = ...,
        ) -> None: ...

    @property
    def lower_bound(self) -> float:
        return self.lower

    @property
    def upper_bound(self) -> float:
        return self.upper

    @property
    def count(self) -> int:
        return self.n


def mean_ci(values: list[float] | np.ndarray, confidence: float = 0.95) -> CI:
    """Mean and Student-t confidence interval of `values` (e.g. one value per question)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values to average")
    mean = float(x.mean())
    if x.size < 2 or float(x.std(ddof=1)) == 0.0:
        return CI(mean=mean, lower=mean, upper=mean, confidence=confidence, n=int(x.size))
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1) * stats.sem(x))
    return CI(mean=mean, lower=mean - half, upper=mean + half, confidence=confidence, n=int(x.size))


def wilson_ci(successes: list[bool] | np.ndarray, confidence: float = 0.95) -> CI:
    """Proportion of successes with a Wilson score interval (good near 0 and 1 and for small n,
    where the normal approximation fails)."""
    x = np.asarray(successes, dtype=float)
    if x.size == 0:
        raise ValueError("no values to average")
    n, p = x.size, float(x.mean())
    z = float(stats.norm.ppf((1 + confidence) / 2))
    denominator = 1 + z**2 / n
    center = (p + z**2 / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return CI(
        mean=p,
        lower=max(0.0, center - half),
        upper=min(1.0, center + half),
        confidence=confidence,
        n=n,
    )


def permutation_p_value(
    a: np.ndarray, b: np.ndarray, paired: bool, n_resamples: int = 10_000, seed: int = 0
) -> float:
    """Two-sided permutation test of mean(a) == mean(b).

    Paired (same questions in the same order): random sign flips of the per-question
    differences. Unpaired: random relabelling of the pooled values.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    if paired:
        diff = a - b
        observed = abs(diff.mean())
        signs = rng.choice([-1.0, 1.0], size=(n_resamples, diff.size))
        null = np.abs((signs * diff).mean(axis=1))
    else:
        pooled = np.concatenate([a, b])
        observed = abs(a.mean() - b.mean())
        perms = np.argsort(rng.random((n_resamples, pooled.size)), axis=1)
        shuffled = pooled[perms]
        null = np.abs(shuffled[:, : a.size].mean(axis=1) - shuffled[:, a.size :].mean(axis=1))
    # +1 smoothing: a permutation test can never give exactly 0.
    return float((np.sum(null >= observed - 1e-12) + 1) / (n_resamples + 1))


def welch_p_value(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float | None:
    """Two-sided Welch's t-test p-value (unequal variances); None with < 2 values in a group.

    When neither group varies, the t statistic is 0/0 or ±inf: the p-value is then 1.0 if the
    means are equal and 0.0 if not (the limit as the variance goes to 0).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    if float(x.var(ddof=1)) == 0.0 and float(y.var(ddof=1)) == 0.0:
        return 1.0 if np.isclose(x.mean(), y.mean(), rtol=0, atol=1e-15) else 0.0
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)  # type: ignore[attr-defined]


def n_label_assignments(n_a: int, n_b: int) -> int:
    """How many ways to relabel n_a + n_b units into groups of n_a and n_b."""
    from math import comb

    return comb(n_a + n_b, n_a)


def exact_permutation_p_value(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    """Two-sided exact permutation test of mean(a) == mean(b): enumerates every assignment of
    the pooled values to groups of len(a) and len(b) and returns the share whose |difference
    of means| is at least the observed one (the observed assignment counts, so p > 0).
    """
    from itertools import combinations

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("both groups need at least one value")
    pooled = np.concatenate([x, y])
    total, n_a, n = float(pooled.sum()), x.size, pooled.size
    observed = abs(x.mean() - y.mean())
    hits = count = 0
    for group in combinations(range(n), n_a):
        s = float(pooled[list(group)].sum())
        hits += abs(s / n_a - (total - s) / (n - n_a)) >= observed - 1e-12
        count += 1
    return hits / count
