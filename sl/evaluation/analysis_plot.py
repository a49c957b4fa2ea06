"""The paper-style bar chart of an Analysis: per target, base / control / that target's student."""

from pathlib import Path

from sl.evaluation.analysis import Analysis
from sl.evaluation.runs import RunLevelRow, student_of

COLORS = {"base": "#9e9e9e", "control": "#5b8bd6", "student": "#e07b39"}


def plot_analysis(analysis: Analysis, path: Path) -> None:
    """Targets on x; bars = mean across runs, error bars = 95 % t-CI across runs, each run a
    point over its bar; the student's p vs the control (with its test's unit) above it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_key = {(r.target, r.condition): r for r in analysis.rows}
    conditions = list(dict.fromkeys(r.condition for r in analysis.rows))
    series = [("base", analysis.base), ("control", analysis.control), ("student", None)]
    series = [(role, name) for role, name in series if role == "student" or name is not None]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.2 + 1.6 * len(analysis.targets), 4.2))
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
    ax.set_ylabel(f"answers naming the target, % (match: {analysis.match})")
    ax.set_title("mean across runs, 95 % t-CI; dots: runs", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


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
