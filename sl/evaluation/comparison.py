"""Student vs control on per-question values: the one comparison of sampled and logprob scores.

from sl.evaluation.comparison import compare
from sl.evaluation.scoring import per_question_rates
c = compare(per_question_rates("owl", student_rows), per_question_rates("owl", control_rows),
            paired=True)   # both answered the same questions in the same order
c.difference, c.p_value, c.test
"""

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from sl.utils.stats import CI, mean_ci, permutation_p_value

PAIRED_TEST = "paired sign-flip permutation test over questions"
UNPAIRED_TEST = "two-sample permutation test over questions"


class Comparison(BaseModel):
    """Student minus control on per-question values, paired or not (`paired` says which)."""

    student: CI
    control: CI
    difference: CI
    p_value: float
    paired: bool
    test: str


def compare(
    student: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    paired: bool,
    confidence: float = 0.95,
) -> Comparison:
    """Difference of the means with a CI and a permutation-test p-value.

    Paired (the same questions in the same order): a t-interval of the per-question
    differences and random sign flips of them. Unpaired (other questions, or other counts):
    a normal interval with Welch's standard error and random relabelling of the pooled values.
    """
    a, b = np.asarray(student, dtype=float), np.asarray(control, dtype=float)
    if paired and a.shape != b.shape:
        raise ValueError(f"a paired comparison needs equal lengths, got {a.size} and {b.size}")
    if paired:
        difference = mean_ci(a - b, confidence)
    else:
        diff = float(a.mean() - b.mean())
        half = _z(confidence) * float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
        difference = CI(
            mean=diff,
            lower=diff - half,
            upper=diff + half,
            confidence=confidence,
            n=int(a.size + b.size),
        )
    return Comparison(
        student=mean_ci(a, confidence),
        control=mean_ci(b, confidence),
        difference=difference,
        p_value=permutation_p_value(a, b, paired=paired),
        paired=paired,
        test=PAIRED_TEST if paired else UNPAIRED_TEST,
    )


def _z(confidence: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf((1 + confidence) / 2))
