"""Analyse evaluation result files (conditions × runs) with the run as the unit.

    from sl.evaluation.analysis import analyze_result_files, format_analysis, write_analysis
    analysis = analyze_result_files(
        {"default": ["default_run1.jsonl", ...], "control": [...], "eagle": [...]},
        targets=["eagle"], control="control", base="default", match="exact",
    )
    print(format_analysis(analysis)); write_analysis(analysis, "data/analysis")

The command line is scripts/analyze_results.py. The condition named like a target is that
target's student; every condition is scored on every target (the full matrix). For a float per
question instead of answers (an exact P(target) per question), `analyze_scores` does the same.
"""

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from sl.errors import UserError
from sl.evaluation.comparison import compare
from sl.evaluation.data_models import EvaluationResultRow
from sl.evaluation.runs import (
    CSV_COLUMNS,
    PValue,
    RunLevelRow,
    Specificity,
    count_hits,
    run_level_rows,
    specificity,
    student_of,
)
from sl.evaluation.scoring import MatchRule, per_question_rates
from sl.evaluation.services import read_evaluation_results
from sl.utils.file_utils import write_json_atomic, write_text_atomic
from sl.utils.output_lock import check_output_path
from sl.utils.run_meta import claim_output, read_meta

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
        raise UserError(
            "conditions: none given; give each condition's name and result files",
            param="conditions",
        )
    runs: dict[str, Runs] = {}
    for name, paths in conditions.items():
        if not paths:
            raise UserError(
                f"condition {name} has no result files: give one file per run", param="condition"
            )
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
    notes = _question_set_notes(runs, control)

    def run_values(target: str) -> tuple[dict[str, list[float]], dict[str, int] | None]:
        counts = {c: [count_hits(target, run, match) for run in runs[c]] for c in runs}
        if not any(h for c in runs for h, _ in counts[c]):
            notes.append(f"no answer names {target!r} (match={match}): its values are all 0")
        values = {c: [h / n for h, n in counts[c]] for c in runs}
        return values, {c: sum(n for _, n in counts[c]) for c in runs}

    def question_test(target: str, condition: str) -> tuple[PValue, bool]:
        return _question_level(target, runs[condition], runs[control], match)

    return _analyze(
        list(runs), targets, control, base, match, run_values, question_test, notes, confidence
    )


Scores = Sequence[Mapping[str, Sequence[float]]]  # one {target: per-question values} per run


def analyze_scores(
    scores: Mapping[str, Scores],
    targets: Sequence[str],
    control: str = "control",
    base: str | None = None,
    metric: str = "logprob",
    confidence: float = 0.95,
) -> Analysis:
    """`analyze_runs` for per-question values instead of answers (e.g. the exact P(target) of
    each question from `logprob` scoring): a run's value is the mean over its questions.

    Every run of every condition must score the same questions in the same order; the
    question-level test is the paired sign-flip test over questions on each question's mean
    across runs.
    """
    _check_names(scores, targets, control, base)
    sizes = {len(v) for runs in scores.values() for run in runs for v in run.values()}
    if len(sizes) > 1:
        raise UserError(
            f"per-question scores of different lengths {sorted(sizes)}: "
            "score every model on the same questions"
        )

    def per_question(condition: str, target: str) -> np.ndarray:
        return np.mean([np.asarray(run[target], dtype=float) for run in scores[condition]], 0)

    def run_values(target: str) -> tuple[dict[str, list[float]], None]:
        values = {c: [float(np.mean(run[target])) for run in scores[c]] for c in scores}
        return values, None

    def question_test(target: str, condition: str) -> tuple[PValue, bool]:
        c = compare(per_question(condition, target), per_question(control, target), paired=True)
        pooled = len(scores[condition]) > 1 or len(scores[control]) > 1
        test = c.test + (" (each question's mean over runs)" if pooled else "")
        return PValue(p_value=c.p_value, test=test), True

    return _analyze(
        list(scores), targets, control, base, metric, run_values, question_test, [], confidence
    )


def _analyze(
    conditions: list[str],
    targets: Sequence[str],
    control: str,
    base: str | None,
    match: str,
    run_values: Callable[[str], tuple[dict[str, list[float]], Mapping[str, int] | None]],
    question_test: Callable[[str, str], tuple[PValue, bool]],
    notes: list[str],
    confidence: float,
) -> Analysis:
    """The per-target analysis shared by `analyze_runs` and `analyze_scores`."""
    order = list(dict.fromkeys([c for c in (base, control) if c is not None] + conditions))
    rows, question_level, specific = [], [], []
    for target in targets:
        values, n_responses = run_values(target)
        values = {c: values[c] for c in order}
        for row in run_level_rows(
            target, values, control, match=match, n_responses=n_responses, confidence=confidence
        ):
            if row.condition != control:
                q, paired = question_test(target, row.condition)
                question_level.append(
                    QuestionLevelTest(
                        target=target, condition=row.condition, paired=paired, result=q
                    )
                )
                if row.n_runs == 1 and len(values[control]) == 1:
                    row = row.model_copy(update={"p_vs_control": q.p_value, "test": q.test})
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
    runs: Mapping[str, object], targets: Sequence[str], control: str, base: str | None
) -> None:
    names = ", ".join(runs)
    if control not in runs:
        raise UserError(
            f"control {control}: no condition of that name (given: {names})", param="control"
        )
    if base is not None and base not in runs:
        raise UserError(f"base {base}: no condition of that name (given: {names})", param="base")
    if not targets or any(not t.strip() for t in targets):
        raise UserError("targets: give at least one non-empty target, e.g. owl", param="targets")


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
    """(PValue, paired) for a condition vs the control over questions: paired when both
    answered the same question set (the condition's rows put in the control's order)."""
    control_rows = _pool_by_question(control_runs)
    paired = _questions(runs) == _questions(control_runs)
    rows = _pool_by_question(runs, [r.question for r in control_rows] if paired else None)
    comparison = compare(
        per_question_rates(target, rows, match),
        per_question_rates(target, control_rows, match),
        paired=paired,
    )
    test = comparison.test
    if len(runs) > 1 or len(control_runs) > 1:
        test += " (answers of all runs pooled per question)"
    if not paired:
        test += "; question sets differ, so unpaired"
    return PValue(p_value=comparison.p_value, test=test), paired


def results_csv(
    rows: Sequence[RunLevelRow],
    columns: Sequence[str] = CSV_COLUMNS,
    labels: Sequence[Mapping[str, str]] | None = None,
) -> str:
    """results.csv: the `columns` (RunLevelRow fields) of every row, after the `labels`
    columns if given (one mapping per row, the same keys in each, e.g. the evaluation)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    leading = list(labels[0]) if labels else []
    writer.writerow([*leading, *columns])
    for i, row in enumerate(rows):
        label = [labels[i][k] for k in leading] if labels else []
        writer.writerow(label + row.csv_row(columns))
    return out.getvalue()


def mean_matrix(analysis: Analysis) -> dict[str, dict[str, float]]:
    """condition -> target -> mean across runs: every model scored on every target."""
    matrix: dict[str, dict[str, float]] = {}
    for r in analysis.rows:
        matrix.setdefault(r.condition, {})[r.target] = r.mean
    return matrix


def format_matrix(analysis: Analysis) -> str:
    """The mean matrix as text (percent): a row per condition, a column per target."""
    matrix = mean_matrix(analysis)
    width = max(12, *(len(t) + 2 for t in analysis.targets))
    name_width = max(14, *(len(c) + 2 for c in matrix))
    lines = [
        f"mean % across runs, every condition on every target (match: {analysis.match}):",
        f"{'condition':<{name_width}}" + "".join(f"{t:>{width}}" for t in analysis.targets),
    ]
    for condition, by_target in matrix.items():
        cells = "".join(f"{100 * by_target[t]:>{width}.4g}" for t in analysis.targets)
        lines.append(f"{condition:<{name_width}}{cells}")
    return "\n".join(lines)


ANALYSIS_KIND = "analysis results"


def write_analysis(analysis: Analysis, output_dir: Path | str) -> dict[str, Path]:
    """Write results.csv, results.json and results.png (atomically) in `output_dir`.

    Each file is claimed first (a `.meta.json` sidecar, see `claim_output`): files an analysis
    wrote are replaced by the next one, but a file of the same name that an analysis did not
    write (the user's own, an experiment's report) is never touched.

    Raises:
        UserError: `output_dir` is a file or not writable, or one of the three files there
            was not written by an analysis; nothing is written then.
    """
    from sl.evaluation.analysis_plot import plot_analysis

    out = Path(output_dir)
    paths = {n: out / f"results.{n}" for n in ("csv", "json", "png")}
    check_output_path(out, is_dir=True)
    for path in paths.values():
        check_output_path(path)
        meta = read_meta(path)
        if (meta is None and path.exists()) or (meta and meta.get("kind") != ANALYSIS_KIND):
            raise UserError(
                f"{path} exists and was not written by an analysis: choose another output "
                "folder or move it away",
                path=path,
            )
    for path in paths.values():
        claim_output(path, ANALYSIS_KIND, "results of an analysis", kind=ANALYSIS_KIND)
    write_text_atomic(paths["csv"], results_csv(analysis.rows))
    write_json_atomic(paths["json"], analysis.model_dump(mode="json"))
    plot_analysis(analysis, paths["png"])
    return paths


def format_analysis(analysis: Analysis) -> str:
    """The table to print: per target and condition, mean [CI], run values, p vs control."""
    values = {id(r): " ".join(f"{100 * v:.3g}" for v in r.run_values) for r in analysis.rows}
    width = max(len("each run %"), *(len(v) for v in values.values()))
    header = (
        f"{'target':<12} {'condition':<14} {'mean % [95% t-CI over runs]':<30} runs  "
        f"{'each run %':<{width}}  p vs {analysis.control}"
    )
    lines = [f"match: {analysis.match}", header, "-" * len(header)]
    by_key = {(r.target, r.condition): r for r in analysis.rows}
    for r in analysis.rows:
        ci = f"{100 * r.mean:.3g} [{100 * r.ci_low:.3g}, {100 * r.ci_high:.3g}]"
        p = "" if r.p_vs_control is None else f"{r.p_vs_control:.3g} ({r.test})"
        lines.append(
            f"{r.target:<12} {r.condition:<14} {ci:<30} {r.n_runs:>4}  {values[id(r)]:<{width}}  {p}"
        )
    for s in analysis.specificity:
        c = s.comparison
        lines.append(
            f"specificity {s.target}: {s.student} {100 * c.a.mean:.3g} % vs "
            f"{', '.join(s.others)} {100 * c.b.mean:.3g} %, p={_p(c.welch)} ({c.welch.test}); "
            f"p={_p(c.permutation)} ({c.permutation.test})"
        )
    conditions = [r.condition for r in analysis.rows]
    for q in analysis.question_level:
        if q.condition == student_of(q.target, conditions) and (
            by_key[(q.target, q.condition)].test != q.result.test
        ):
            lines.append(
                f"{q.target}: {q.condition} vs {analysis.control}, "
                f"p={_p(q.result)} ({q.result.test})"
            )
    lines += ["", format_matrix(analysis)]
    lines += [f"note: {n}" for n in analysis.notes]
    return "\n".join(lines)


def _p(result: PValue) -> str:
    return "n/a" if result.p_value is None else f"{result.p_value:.3g}"
