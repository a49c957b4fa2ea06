"""The experiment's report: every model on every target, with the run as the unit.

One panel per evaluation and eval mode, each an `Analysis` of `sl.evaluation.analysis` (the
same code as scripts/analyze_results.py): conditions are `base` (one run), `control` and each
target (the students, one run per replicate) and `teacher_<target>` (fine-tuned teachers, one
run per teacher replicate). Per target and condition: each run's value, the mean across runs
with a 95 % t-interval, vs the control by Welch's t-test over runs and the exact permutation
test over run labels (with one run each: the paired test over questions), the paired test over
questions, and specificity (a target's students vs the other targets' students on it).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from sl.evaluation.analysis import (
    Analysis,
    analyze_runs,
    analyze_scores,
    format_analysis,
    mean_matrix,
    results_csv,
)
from sl.evaluation.logprob import read_logprob_scores
from sl.evaluation.runs import CSV_COLUMNS, RunLevelRow
from sl.evaluation.services import read_evaluation_results
from sl.experiment.arms_report import (
    ArmEffect,
    arm_conditions,
    arm_effects,
    format_arm_effects,
    write_arm_effects,
)
from sl.experiment.data_models import BASE, CONTROL, ExperimentCfg
from sl.experiment.label_leak import ArmLeak, format_leak, read_label_leak
from sl.experiment.paths import ExperimentPaths
from sl.experiment.steps import conditions, teacher_runs
from sl.finetuning.distill_cfg import FULL_VOCABULARY_WARNING
from sl.utils.file_utils import read_json_model, write_json_atomic, write_text_atomic
from sl.utils.run_meta import read_meta

Metric = Literal["sampled", "logprob"]
DESCRIPTION = {
    "sampled": "share of sampled answers naming the target (whole word, plurals count)",
    "logprob": "exact P(answer starts with the target), mean over questions",
}
# results.csv: the evaluation and metric, analyze_results' columns, then these run-level extras.
EXTRA_COLUMNS = ("permutation_p", "permutation_test", "run_values")


class ReportPanel(BaseModel):
    """One evaluation in one eval mode."""

    evaluation: str
    metric: Metric
    analysis: Analysis
    matrix: dict[str, dict[str, float]]  # condition -> target -> mean across runs


class DatasetSize(BaseModel):
    """A teacher replicate's rows before and after the numbers filter."""

    raw_rows: int
    filtered_rows: int


def dataset_sizes(filtered: Mapping[str, Path]) -> dict[str, DatasetSize]:
    """teacher replicate -> its rows before / after the filter, from the filtered files'
    sidecars (0 for a dataset not written yet)."""
    sizes = {}
    for name, path in filtered.items():
        meta = read_meta(path) or {}
        sizes[name] = DatasetSize(
            raw_rows=meta.get("raw_rows", 0), filtered_rows=meta.get("rows", 0)
        )
    return sizes


class ExperimentReport(BaseModel):
    """Everything results.json holds."""

    conditions: dict[str, list[str]]  # condition -> its runs (model folders in evaluations/)
    datasets: dict[str, DatasetSize]  # teacher replicate -> rows before / after the filter
    panels: list[ReportPanel]
    # teacher replicate -> the leak meter of its students' labels (`sl.experiment.label_leak`)
    leak: dict[str, ArmLeak] = {}
    # the student arms' effects left (arms.json; not in results.json)
    arms: list[ArmEffect] = Field(default_factory=list, exclude=True)

    def row(self, target: str, condition: str, panel: int = 0) -> RunLevelRow:
        """One condition's row on one target in a panel (the first by default)."""
        rows = self.panels[panel].analysis.rows
        return next(r for r in rows if (r.target, r.condition) == (target, condition))


def report_panel(evaluation: str, metric: Metric, analysis: Analysis) -> ReportPanel:
    return ReportPanel(
        evaluation=evaluation, metric=metric, analysis=analysis, matrix=mean_matrix(analysis)
    )


def experiment_csv(report: ExperimentReport) -> str:
    """results.csv: a row per evaluation, metric, target and condition."""
    rows, labels = [], []
    for panel in report.panels:
        for row in panel.analysis.rows:
            rows.append(row)
            labels.append({"evaluation": panel.evaluation, "metric": panel.metric})
    return results_csv(rows, (*CSV_COLUMNS, *EXTRA_COLUMNS), labels)


def write_report(report: ExperimentReport, output_dir: Path) -> None:
    """results.json (everything), results.csv (flat) and results.png in `output_dir`."""
    paths = ExperimentPaths(output_dir)
    write_json_atomic(paths.results("json"), report.model_dump(mode="json"))
    write_text_atomic(paths.results("csv"), experiment_csv(report))
    plot_report(report, paths.results("png"))


def read_report(output_dir: Path) -> ExperimentReport:
    """Load a saved report (to re-render without recomputing)."""
    path = ExperimentPaths(output_dir).results("json")
    return read_json_model(path, ExperimentReport, "experiment report")


def plot_report(report: ExperimentReport, path: Path) -> None:
    """One panel per evaluation and metric: bars with 95 % t-CIs across runs, runs as dots."""
    from sl.evaluation.analysis_plot import plot_analyses

    plot_analyses([(f"{p.evaluation} ({p.metric})", p.analysis) for p in report.panels], path)


def format_report(report: ExperimentReport) -> str:
    """The printed table: per panel the run-level table, the tests (each naming its unit),
    specificity and the condition x target matrix; then the rows each teacher kept."""
    parts = []
    for panel in report.panels:
        title = f"== {panel.evaluation}, {panel.metric}: {DESCRIPTION[panel.metric]} =="
        parts.append(f"{title}\n{format_analysis(panel.analysis)}")
    kept = ", ".join(
        f"{name} {d.filtered_rows}/{d.raw_rows}" for name, d in report.datasets.items()
    )
    parts.append(f"rows kept by the numbers filter: {kept}")
    if report.leak:
        lines = [
            "leak meter: P(answer starts with the target) at the numbers prompts' answer start, "
            "teacher / base, and in the labels the students train on ('!': labels over "
            "10x the base)"
        ]
        for name, arm in report.leak.items():
            lines.append(f"  {name}: {format_leak(arm)}")
        if any(arm.labels == "full" for arm in report.leak.values()):
            lines.append(f"  full-vocabulary labels: {FULL_VOCABULARY_WARNING}")
        parts.append("\n".join(lines))
    if report.arms:
        parts.append(format_arm_effects(report.arms))
    return "\n\n".join(parts)


def _analysis(
    cfg: ExperimentCfg,
    paths: ExperimentPaths,
    runs_of: dict[str, list[str]],
    eval_name: str,
    metric: Metric,
) -> Analysis:
    """One evaluation in one eval mode, of the conditions `runs_of`."""
    if metric == "sampled":
        runs = {
            c: [read_evaluation_results(paths.evaluation(m, eval_name)) for m in models]
            for c, models in runs_of.items()
        }
        return analyze_runs(runs, cfg.targets, CONTROL, BASE, match="word")
    scores = {
        c: [read_logprob_scores(paths.logprob(m, eval_name)) for m in models]
        for c, models in runs_of.items()
    }
    return analyze_scores(scores, cfg.targets, CONTROL, BASE)


def arms_part(cfg: ExperimentCfg, paths: ExperimentPaths) -> list[ArmEffect]:
    """The student arms' effects left (`arms_report`), written to arms.json / arms.csv."""
    runs_of = {**conditions(cfg), **arm_conditions(cfg)}
    values = {}
    for eval_name in cfg.evaluations:
        for metric in cfg.arm_eval_modes or cfg.eval_modes:
            rows = _analysis(cfg, paths, runs_of, eval_name, metric).rows
            by_condition: dict[str, dict[str, list[float]]] = {}
            for row in rows:
                by_condition.setdefault(row.condition, {})[row.target] = row.run_values
            values[(eval_name, metric)] = by_condition
    effects = arm_effects(cfg, values)
    write_arm_effects(effects, paths)
    return effects


def build_report(cfg: ExperimentCfg, paths: ExperimentPaths) -> ExperimentReport:
    """Analyse every evaluation in every eval mode (runs as the unit); write
    results.csv/json/png (the main arm) and, with student arms, arms.json/csv; return the
    report."""
    runs_of = conditions(cfg)
    panels = []
    for eval_name in cfg.evaluations:
        for metric in cfg.eval_modes:
            analysis = _analysis(cfg, paths, runs_of, eval_name, metric)
            panels.append(report_panel(eval_name, metric, analysis))
    datasets = dataset_sizes({t.name: paths.filtered(t) for t in teacher_runs(cfg)})
    leak = {t.name: read_label_leak(paths.leak(t)) for t in teacher_runs(cfg)}
    result = ExperimentReport(
        conditions=runs_of,
        datasets=datasets,
        panels=panels,
        leak={name: arm for name, arm in leak.items() if arm is not None},
    )
    write_report(result, paths.root)
    if cfg.arms:
        result.arms = arms_part(cfg, paths)
    return result
