"""Run-level statistics: one value per run, runs as the unit of every test.

A run is one fine-tune (a training seed, a replicate) evaluated once. Its value is the share of
its answers naming the target (`p_target_of_run`) or any other float per run (an exact
P(target) from `logprob` scoring). Testing across runs answers "did the teacher cause it?";
a test over the questions of one run only says "these two models differ".

    from sl.evaluation.runs import p_target_of_run, run_level_rows, specificity
    values = {"control": [0.13, 0.12, 0.15], "eagle": [0.78, 0.77, 0.78]}
    rows = run_level_rows("eagle", values, control="control", match="exact")
"""

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel

from sl.errors import UserError
from sl.evaluation.data_models import EvaluationResultRow
from sl.evaluation.scoring import MatchRule, target_matcher
from sl.utils.stats import (
    CI,
    exact_permutation_p_value,
    mean_ci,
    n_label_assignments,
    permutation_p_value,
    welch_p_value,
)

# Up to this many relabellings of runs the permutation test enumerates them all (exact);
# beyond, it draws 10,000 random relabellings.
MAX_EXACT_ASSIGNMENTS = 100_000

# The columns of results.csv, in order (`RunLevelRow.csv_row`).
CSV_COLUMNS = (
    "target",
    "condition",
    "match",
    "mean",
    "ci_low",
    "ci_high",
    "n_runs",
    "n_responses",
    "p_vs_control",
    "test",
)


class PValue(BaseModel):
    """A p-value and the test that gave it, with its unit; p_value None: test not possible."""

    p_value: float | None
    test: str


def count_hits(
    target: str, rows: list[EvaluationResultRow], match: MatchRule = "word"
) -> tuple[int, int]:
    """(answers naming the target, answers) over all responses of one run."""
    hit = target_matcher(target, match)
    completions = [r.response.completion for row in rows for r in row.responses]
    return sum(hit(c) for c in completions), len(completions)


def p_target_of_run(
    target: str, rows: list[EvaluationResultRow], match: MatchRule = "word"
) -> float:
    """One run's value: the share of all its answers naming the target.

    Pooled over all responses; equal to the mean of per-question rates when every question
    has the same number of answers (as in the original code's result files).
    """
    hits, n = count_hits(target, rows, match)
    if n == 0:
        raise UserError("the run has no responses to score")
    return hits / n


def welch_test(a: Sequence[float], b: Sequence[float]) -> PValue:
    """Welch's t-test (unequal variances) with the run as the unit."""
    p = welch_p_value(list(a), list(b))
    unit = f"unit: run ({len(a)} vs {len(b)} runs)"
    if p is None:
        return PValue(p_value=None, test=f"Welch's t-test not possible (< 2 runs), {unit}")
    return PValue(p_value=p, test=f"Welch's t-test, {unit}")


def permutation_test_over_runs(
    a: Sequence[float], b: Sequence[float], max_exact: int = MAX_EXACT_ASSIGNMENTS
) -> PValue:
    """Permutation test over run labels: exact (every relabelling) when there are few runs."""
    if not a or not b:
        raise ValueError("both groups need at least one run")
    unit = f"unit: run ({len(a)} vs {len(b)} runs)"
    n = n_label_assignments(len(a), len(b))
    if n <= max_exact:
        p = exact_permutation_p_value(list(a), list(b))
        return PValue(
            p_value=p, test=f"exact permutation test over run labels ({n} relabellings), {unit}"
        )
    p = permutation_p_value(np.asarray(a, dtype=float), np.asarray(b, dtype=float), paired=False)
    return PValue(
        p_value=p, test=f"permutation test over run labels (10,000 random relabellings), {unit}"
    )


class RunComparison(BaseModel):
    """Condition a vs condition b across runs."""

    a: CI
    b: CI
    difference: float
    welch: PValue
    permutation: PValue

    @property
    def primary(self) -> PValue:
        """Welch's t-test when possible (≥ 2 runs each), else the permutation test."""
        return self.welch if self.welch.p_value is not None else self.permutation


def compare_runs(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> RunComparison:
    """Mean of a minus mean of b, with Welch's t-test and the permutation test over runs."""
    ci_a, ci_b = mean_ci(list(a), confidence), mean_ci(list(b), confidence)
    return RunComparison(
        a=ci_a,
        b=ci_b,
        difference=ci_a.mean - ci_b.mean,
        welch=welch_test(a, b),
        permutation=permutation_test_over_runs(a, b),
    )


class RunLevelRow(BaseModel):
    """One condition on one target: the results.csv row plus each run's value and all tests."""

    target: str
    condition: str
    match: str
    mean: float
    ci_low: float
    ci_high: float
    n_runs: int
    n_responses: int | None
    p_vs_control: float | None
    test: str
    run_values: list[float]
    permutation_p: float | None = None
    permutation_test: str = ""

    def csv_row(self, columns: Sequence[str] = CSV_COLUMNS) -> list[str]:
        """The `columns` values as text (floats at full precision, None as empty, a list of
        run values as space-separated floats)."""
        return [_csv_cell(getattr(self, c)) for c in columns]


def _csv_cell(value: object) -> str:
    if isinstance(value, list):
        return " ".join(_csv_cell(v) for v in value)
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def run_level_rows(
    target: str,
    values: Mapping[str, Sequence[float]],
    control: str | None = "control",
    *,
    match: str = "word",
    n_responses: Mapping[str, int] | None = None,
    confidence: float = 0.95,
) -> list[RunLevelRow]:
    """One row per condition: mean across runs with a t-interval (n−1 df), and vs `control`.

    Args:
        target: what the values measure (e.g. "owl").
        values: condition name -> one value per run (p(target) of each run, or any float).
        control: the condition the others are tested against (None: no tests).
        match: the rule or metric that made the values ("word", "exact", "logprob", ...).
        n_responses: condition -> answers behind its values (None where not applicable).
    """
    if control is not None and control not in values:
        raise UserError(f"control {control!r} is not among the conditions: {', '.join(values)}")
    rows = []
    for condition, runs in values.items():
        if not runs:
            raise UserError(f"condition {condition!r} has no runs")
        ci = mean_ci(list(runs), confidence)
        welch, perm = PValue(p_value=None, test=""), PValue(p_value=None, test="")
        if control is not None and condition != control:
            comparison = compare_runs(runs, values[control], confidence)
            welch, perm = comparison.primary, comparison.permutation
        rows.append(
            RunLevelRow(
                target=target,
                condition=condition,
                match=match,
                mean=ci.mean,
                ci_low=ci.lower,
                ci_high=ci.upper,
                n_runs=len(runs),
                n_responses=(n_responses or {}).get(condition),
                p_vs_control=welch.p_value,
                test=welch.test,
                run_values=[float(v) for v in runs],
                permutation_p=perm.p_value,
                permutation_test=perm.test,
            )
        )
    return rows


def student_of(target: str, conditions: Sequence[str]) -> str | None:
    """The condition named like the target (case-insensitive): that target's student."""
    wanted = target.strip().lower()
    return next((c for c in conditions if c.strip().lower() == wanted), None)


class Specificity(BaseModel):
    """On one target: its own student vs the other targets' students (runs pooled)."""

    target: str
    student: str
    others: list[str]
    comparison: RunComparison


def specificity(
    target: str, values: Mapping[str, Sequence[float]], targets: Sequence[str]
) -> Specificity | None:
    """Own-target student vs the other targets' students, all scored on `target`.

    `values` maps condition -> per-run values on `target`; a target's student is the condition
    named like it. Every run of every other student is one unit of the comparison. None when
    `target` has no student or no other target has one.
    """
    student = student_of(target, list(values))
    others = [s for t in targets if t != target and (s := student_of(t, list(values)))]
    others = [s for s in dict.fromkeys(others) if s != student]
    if student is None or not others:
        return None
    pooled = [v for s in others for v in values[s]]
    return Specificity(
        target=target,
        student=student,
        others=others,
        comparison=compare_runs(values[student], pooled),
    )
