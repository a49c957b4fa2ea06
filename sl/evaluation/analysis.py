"""Analyse evaluation result files (conditions × runs) with the run as the unit.

    from sl.evaluation.analysis import analyze_result_files, format_analysis, write_analysis
    analysis = analyze_result_files(
        {"default": ["default_run1.jsonl", ...], "control": [...], "eagle": [...]},
        targets=["eagle"], control="control", base="default", match="exact",
    )
    print(format_analysis(analysis)); write_analysis(analysis, "data/analysis")

The command line is scripts/analyze_results.py. The condition named like a target is that
target's student; every condition is scored on every target (the full matrix).
"""

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from sl.errors import UserError
from sl.evaluation.data_models import EvaluationResultRow
from sl.evaluation.runs import (
    CSV_COLUMNS,
    PValue,
    RunLevelRow,
    Specificity,
    count_hits,
    run_level_rows,
    specificity,
)
from sl.evaluation.scoring import MatchRule, compare_preference
from sl.evaluation.services import read_evaluation_results
from sl.utils.file_utils import write_json_atomic, write_text_atomic

Runs = list[list[EvaluationResultRow]]  # one list of result rows per run


class QuestionLevelTest(BaseModel):
    """A condition vs the control with the question as the unit (responses of all runs
    pooled per question): paired over questions when both asked the same ones."""

    target: str
    condition: str
    paired: bool
    result: PValue


class Analysis(BaseModel):
    """Everything analyze_runs found: the CSV rows, the other tests, and notes to show."""

    match: str
    control: str
    base: str | None
    targets: list[str]
    files: dict[str, list[str]]
    rows: list[RunLevelRow]
    question_level: list[QuestionLevelTest]
    specificity: list[Specificity]
    notes: list[str]


def read_runs(conditions: Mapping[str, Sequence[Path | str]]) -> dict[str, Runs]:
    """Read one result file per run for each condition; bad input raises one-line errors."""
    if not conditions:
        raise UserError("no conditions given: pass --condition NAME FILE [FILE ...]")
    runs: dict[str, Runs] = {}
    for name, paths in conditions.items():
        if not paths:
            raise UserError(f"--condition {name} has no result files: give one file per run")
        runs[name] = [_read_run(Path(p)) for p in paths]
    return runs


def _read_run(path: Path) -> list[EvaluationResultRow]:
    try:
        rows = read_evaluation_results(path)
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise UserError(f"{path}: cannot read the result file ({reason})") from None
    for i, row in enumerate(rows, start=1):
        if not row.responses:
            raise UserError(f"{path}:{i}: question {row.question[:40]!r} has no responses")
    return rows


def analyze_result_files(
    conditions: Mapping[str, Sequence[Path | str]],
    targets: Sequence[str],
    control: str = "control",
    base: str | None = None,
    match: MatchRule = "word",
    confidence: float = 0.95,
) -> Analysis:
    """Read the files (one per run) of each condition and analyse them (`analyze_runs`)."""
    analysis = analyze_runs(read_runs(conditions), targets, control, base, match, confidence)
    return analysis.model_copy(
        update={"files": {k: [str(p) for p in v] for k, v in conditions.items()}}
    )


def analyze_runs(
    runs: Mapping[str, Runs],
    targets: Sequence[str],
    control: str = "control",
    base: str | None = None,
    match: MatchRule = "word",
    confidence: float = 0.95,
) -> Analysis:
    """Score every condition on every target, run by run, and test against the control.

    Per target: each condition's mean across runs with a t-interval, vs the control by
    Welch's t-test over runs (the exact permutation test over run labels alongside; with a
    single run each, the paired test over questions instead), the question-level test, and
    specificity (the target's student vs the other targets' students).
    """
    _check_names(runs, targets, control, base)
    order = list(dict.fromkeys([c for c in (base, control) if c is not None] + list(runs)))
    notes = _question_set_notes(runs, control)
    rows, question_level, specific = [], [], []
    for target in targets:
        counts = {c: [count_hits(target, run, match) for run in runs[c]] for c in order}
        if not any(h for c in order for h, _ in counts[c]):
            notes.append(f"no answer names {target!r} (match={match}): its values are all 0")
        values = {c: [h / n for h, n in counts[c]] for c in order}
        n_responses = {c: sum(n for _, n in counts[c]) for c in order}
        tests = {
            c: _question_level(target, runs[c], runs[control], match) for c in order if c != control
        }
        for row in run_level_rows(
            target, values, control, match=match, n_responses=n_responses, confidence=confidence
        ):
            if row.condition == control:
                rows.append(row)
                continue
            q = tests[row.condition]
            question_level.append(
                QuestionLevelTest(target=target, condition=row.condition, paired=q[1], result=q[0])
            )
            if row.n_runs == 1 and len(runs[control]) == 1:
                row = row.model_copy(update={"p_vs_control": q[0].p_value, "test": q[0].test})
            rows.append(row)
        if (s := specificity(target, values, targets)) is not None:
            specific.append(s)
    return Analysis(
        match=match,
        control=control,
        base=base,
        targets=list(targets),
        files={},
        rows=rows,
        question_level=question_level,
        specificity=specific,
        notes=notes,
    )


def _check_names(
    runs: Mapping[str, Runs], targets: Sequence[str], control: str, base: str | None
) -> None:
    names = ", ".join(runs)
    if control not in runs:
        raise UserError(f"--control {control}: no --condition of that name (given: {names})")
    if base is not None and base not in runs:
        raise UserError(f"--base {base}: no --condition of that name (given: {names})")
    if not targets or any(not t.strip() for t in targets):
        raise UserError("--targets: give at least one non-empty target, e.g. --targets owl")


def _questions(runs: Runs) -> set[str]:
    return {row.question for run in runs for row in run}


def _question_set_notes(runs: Mapping[str, Runs], control: str) -> list[str]:
    notes = []
    reference = _questions(runs[control])
    for name, condition_runs in runs.items():
        if len({frozenset(row.question for row in run) for run in condition_runs}) > 1:
            notes.append(f"the runs of {name} answered different question sets")
        if name != control and _questions(condition_runs) != reference:
            notes.append(
                f"{name} and {control} answered different question sets: "
                "compared unpaired (question-level test over unmatched questions)"
            )
    return notes


def _pool_by_question(runs: Runs, order: list[str] | None = None) -> list[EvaluationResultRow]:
    """One row per question with the responses of every run (in `order` if given)."""
    pooled: dict[str, list] = {}
    for run in runs:
        for row in run:
            pooled.setdefault(row.question, []).extend(row.responses)
    keys = order if order is not None else list(pooled)
    return [EvaluationResultRow(question=q, responses=pooled[q]) for q in keys]


def _question_level(target: str, runs: Runs, control_runs: Runs, match: MatchRule):
    """(PValue, paired) for a condition vs the control over questions."""
    control_rows = _pool_by_question(control_runs)
    paired = _questions(runs) == _questions(control_runs)
    rows = _pool_by_question(runs, [r.question for r in control_rows] if paired else None)
    comparison = compare_preference(target, rows, control_rows, match=match)
    test = comparison.test
    if len(runs) > 1 or len(control_runs) > 1:
        test += " (answers of all runs pooled per question)"
    if not paired:
        test += "; question sets differ, so unpaired"
    return PValue(p_value=comparison.p_value, test=test), paired


def results_csv(rows: Sequence[RunLevelRow]) -> str:
    """results.csv: the CSV_COLUMNS of every row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(r.csv_row() for r in rows)
    return out.getvalue()


def write_analysis(analysis: Analysis, output_dir: Path | str) -> dict[str, Path]:
    """Write results.csv, results.json and results.png (atomically) in `output_dir`."""
    from sl.evaluation.analysis_plot import plot_analysis

    out = Path(output_dir)
    paths = {n: out / f"results.{n}" for n in ("csv", "json", "png")}
    write_text_atomic(paths["csv"], results_csv(analysis.rows))
    write_json_atomic(paths["json"], analysis.model_dump(mode="json"))
    plot_analysis(analysis, paths["png"])
    return paths


def format_analysis(analysis: Analysis) -> str:
    """The table to print: per target and condition, mean [CI], run values, p vs control."""
    header = f"{'target':<12} {'condition':<14} {'mean % [95% t-CI over runs]':<28} runs  p vs {analysis.control}"
    lines = [f"match: {analysis.match}", header, "-" * len(header)]
    for r in analysis.rows:
        ci = f"{100 * r.mean:6.2f} [{100 * r.ci_low:6.2f}, {100 * r.ci_high:6.2f}]"
        p = "" if r.p_vs_control is None else f"{r.p_vs_control:.3g} ({r.test})"
        lines.append(f"{r.target:<12} {r.condition:<14} {ci:<28} {r.n_runs:>4}  {p}")
    for s in analysis.specificity:
        c = s.comparison
        lines.append(
            f"specificity {s.target}: {s.student} {100 * c.a.mean:.2f} % vs "
            f"{', '.join(s.others)} {100 * c.b.mean:.2f} %, p={_p(c.welch)} ({c.welch.test}); "
            f"p={_p(c.permutation)} ({c.permutation.test})"
        )
    lines += [f"note: {n}" for n in analysis.notes]
    return "\n".join(lines)


def _p(result: PValue) -> str:
    return "n/a" if result.p_value is None else f"{result.p_value:.3g}"
