"""The experiment's results table (CSV/JSON, printed) and paper-style bar chart."""

from pathlib import Path

from pydantic import BaseModel

from sl.errors import UserError
from sl.evaluation.data_models import EvaluationResultRow
from sl.evaluation.scoring import compare_preference, compute_p_target_preference
from sl.utils.file_utils import read_json_file, write_json_atomic, write_text_atomic


class ResultRow(BaseModel):
    """p(target) of base, control student and trait student on one evaluation."""

    evaluation: str
    target: str
    metric: str = "sampled"  # "sampled": share of answers naming the target; "logprob": P(target)
    base: float
    base_ci: tuple[float, float]
    control: float
    control_ci: tuple[float, float]
    student: float
    student_ci: tuple[float, float]
    difference: float
    difference_ci: tuple[float, float]
    p_value: float
    test: str
    raw_rows: int
    filtered_rows: int
    control_raw_rows: int
    control_filtered_rows: int


def result_row(
    evaluation: str,
    target: str,
    base: list[EvaluationResultRow],
    control: list[EvaluationResultRow],
    student: list[EvaluationResultRow],
    sizes: dict[str, tuple[int, int]],
) -> ResultRow:
    """Score one target on one evaluation; `sizes` maps teacher -> (raw, filtered) rows."""
    b = compute_p_target_preference(target, base)
    comparison = compare_preference(target, student, control)
    s, c, d = comparison.student, comparison.control, comparison.difference
    return ResultRow(
        evaluation=evaluation,
        target=target,
        base=b.mean,
        base_ci=(b.lower, b.upper),
        control=c.mean,
        control_ci=(c.lower, c.upper),
        student=s.mean,
        student_ci=(s.lower, s.upper),
        difference=d.mean,
        difference_ci=(d.lower, d.upper),
        p_value=comparison.p_value,
        test=comparison.test,
        raw_rows=sizes[target][0],
        filtered_rows=sizes[target][1],
        control_raw_rows=sizes["control"][0],
        control_filtered_rows=sizes["control"][1],
    )


def format_table(rows: list[ResultRow]) -> str:
    """A plain-text table of the results (percentages, 95 % CIs)."""

    def pct(mean: float, ci: tuple[float, float]) -> str:
        return f"{100 * mean:6.2f} [{100 * ci[0]:6.2f}, {100 * ci[1]:6.2f}]"

    header = (
        f"{'evaluation':<18} {'metric':<8} {'target':<10} {'base %':<22} {'control student %':<22} "
        f"{'trait student %':<22} {'student-control (pp)':<22} {'p':>7}  rows kept"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.evaluation:<18} {r.metric:<8} {r.target:<10} {pct(r.base, r.base_ci):<22} "
            f"{pct(r.control, r.control_ci):<22} {pct(r.student, r.student_ci):<22} "
            f"{pct(r.difference, r.difference_ci):<22} {r.p_value:>7.4f}  "
            f"{r.filtered_rows}/{r.raw_rows}"
        )
    return "\n".join(lines)


def write_results(rows: list[ResultRow], output_dir: Path) -> None:
    """results.json (full), results.csv (flat) and results.png in `output_dir`."""
    import pandas as pd

    write_json_atomic(output_dir / "results.json", [r.model_dump() for r in rows])
    flat = []
    for r in rows:
        item = r.model_dump()
        for key in ("base", "control", "student", "difference"):
            lo, hi = item.pop(f"{key}_ci")
            item[f"{key}_ci_low"], item[f"{key}_ci_high"] = lo, hi
        flat.append(item)
    write_text_atomic(output_dir / "results.csv", pd.DataFrame(flat).to_csv(index=False))
    plot_results(rows, output_dir / "results.png")


def read_results(output_dir: Path) -> list[ResultRow]:
    """Load saved results (to re-render without recomputing)."""
    path = output_dir / "results.json"
    if not path.exists():
        raise UserError(f"{path} not found: run the experiment's report stage first")
    return [ResultRow.model_validate(item) for item in read_json_file(path, "results")]


def plot_results(rows: list[ResultRow], path: Path) -> None:
    """Grouped bars per target (base / control student / trait student) with 95 % CI error
    bars (clipped to [0, 100] %) and the student-vs-control p-value; one panel per evaluation
    and metric, since sampled rates and exact probabilities live on different scales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = list(dict.fromkeys((r.evaluation, r.metric) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    series = [
        ("base", "base model", "#9e9e9e"),
        ("control", "control student", "#5b8bd6"),
        ("student", "trait student", "#e07b39"),
    ]
    for ax, (name, metric) in zip(axes[0], panels, strict=True):
        group = [r for r in rows if (r.evaluation, r.metric) == (name, metric)]
        x = np.arange(len(group))
        tops = np.zeros(len(group))
        for k, (key, label, color) in enumerate(series):
            means = np.array([getattr(r, key) for r in group]) * 100
            cis = np.clip(np.array([getattr(r, f"{key}_ci") for r in group]) * 100, 0, 100)
            err = np.clip(np.stack([means - cis[:, 0], cis[:, 1] - means]), 0, None)
            ax.bar(x + (k - 1) * 0.27, means, 0.27, yerr=err, capsize=3, color=color, label=label)
            tops = np.maximum(tops, cis[:, 1])
        ax.set_ylim(0, max(float(tops.max()) * 1.25, 1e-6))
        for i, r in enumerate(group):
            ax.text(i + 0.27, tops[i] * 1.05, f"p={r.p_value:.2g}", ha="center", fontsize=8)
        ax.set_xticks(x, [r.target for r in group])
        ax.set_title(f"{name} ({metric})", fontsize=10)
        ax.set_ylabel("P(target) exact, %" if metric == "logprob" else "answers naming target, %")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
