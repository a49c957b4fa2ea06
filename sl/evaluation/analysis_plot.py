"""The paper-style bar chart of an Analysis: per target, base / control / that target's student."""

from collections.abc import Sequence
from pathlib import Path

from sl.evaluation.analysis import Analysis
from sl.evaluation.runs import RunLevelRow, student_of

COLORS = {"base": "#9e9e9e", "control": "#5b8bd6", "student": "#e07b39"}


def plot_analysis(analysis: Analysis, path: Path) -> None:
    """Targets on x; bars = mean across runs, error bars = 95 % t-CI across runs, each run a
    point over its bar; the student's p vs the control (with its test's unit) above it."""
    plot_analyses([("", analysis)], path)


def plot_analyses(panels: Sequence[tuple[str, Analysis]], path: Path) -> None:
    """`plot_analysis` of several analyses side by side, one titled panel each (e.g. one per
    evaluation and metric, since sampled rates and exact probabilities differ in scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = [1.2 + 1.6 * len(a.targets) for _, a in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths), 4.2), squeeze=False)
    for ax, (title, analysis) in zip(axes[0], panels, strict=True):
        _draw(ax, analysis, title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def _draw(ax, analysis: Analysis, title: str) -> None:
    import numpy as np

    by_key = {(r.target, r.condition): r for r in analysis.rows}
    conditions = list(dict.fromkeys(r.condition for r in analysis.rows))
    series = [("base", analysis.base), ("control", analysis.control), ("student", None)]
    series = [(role, name) for role, name in series if role == "student" or name is not None]
    width = 0.8 / len(series)
    top, labelled = 0.0, set()
    for i, target in enumerate(analysis.targets):
        for k, (role, name) in enumerate(series):
            name = name if role != "student" else student_of(target, conditions)
            row = by_key.get((target, name)) if name is not None else None
            if row is None:
                continue
            x = i + (k - (len(series) - 1) / 2) * width
            label = (
                None
                if role in labelled
                else f"{role} ({name})"
                if role != "student"
                else "the target's student"
            )
            labelled.add(role)
            _bar(ax, np, row, x, width, COLORS[role], label)
            top = max(top, row.ci_high, *row.run_values)
            if role == "student" and row.p_vs_control is not None:
                note = f"p={row.p_vs_control:.2g}\n{_short_test(row.test)}"
                ax.text(x, 100 * row.ci_high, note, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(analysis.targets)), analysis.targets)
    ax.set_ylim(0, max(100 * top * 1.3, 1e-4))
    if analysis.match == "logprob":
        ax.set_ylabel("P(answer starts with the target), exact, %")
    else:
        ax.set_ylabel(f"answers naming the target, % (match: {analysis.match})")
    subtitle = "mean across runs, 95 % t-CI; dots: runs"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="best")


def _bar(ax, np, row: RunLevelRow, x: float, width: float, color: str, label: str | None) -> None:
    mean = 100 * row.mean
    err = [[max(mean - 100 * row.ci_low, 0)], [max(100 * row.ci_high - mean, 0)]]
    ax.bar(x, mean, width, yerr=err, capsize=3, color=color, label=label)
    jitter = (
        np.linspace(-width / 4, width / 4, len(row.run_values)) if len(row.run_values) > 1 else [0]
    )
    ax.scatter(
        x + np.asarray(jitter), [100 * v for v in row.run_values], s=10, color="black", zorder=3
    )


def _short_test(test: str) -> str:
    """ "Welch, runs" / "permutation, runs" / "questions": the test and its unit, briefly."""
    if "over questions" in test:
        return "over questions"
    return ("Welch" if test.startswith("Welch") else "permutation") + ", runs as unit"
