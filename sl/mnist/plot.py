"""Figures of the MNIST experiment: a bar chart per m and accuracy against m."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sl.mnist.experiment import ARMS  # noqa: E402

_SHORT = {
    "reference": "reference",
    "teacher": "teacher",
    "student_aux": "student\naux only",
    "student_all": "student\nall logits",
    "cross_aux": "cross-model\naux only",
    "cross_all": "cross-model\nall logits",
}
_COLORS = {
    "reference": "#999999",
    "teacher": "#333333",
    "student_aux": "#1f77b4",
    "student_all": "#aec7e8",
    "cross_aux": "#d62728",
    "cross_all": "#ff9896",
}


def _save(fig: Any, path: Path) -> None:
    """Write the figure via a temp file + rename (never a half-written PNG)."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def plot_bars(summary: dict[str, dict[str, Any]], n_aux: int, n_models: int, path: Path) -> None:
    """Bar chart of mean test accuracy per arm, 95 % CI error bars, dotted line at reference.

    Args:
        summary: per-arm {"mean", "ci95"} (fractions).
        n_aux: m, for the title.
        n_models: N, for the title.
        path: PNG to write.
    """
    means = [100 * summary[a]["mean"] for a in ARMS]
    errs = [100 * (summary[a]["ci95"] or 0.0) for a in ARMS]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.bar(
        [_SHORT[a] for a in ARMS], means, yerr=errs, capsize=4,
        color=[_COLORS[a] for a in ARMS],
    )  # fmt: skip
    ax.axhline(100 * summary["reference"]["mean"], ls=":", color="k", lw=1, label="reference")
    for i, m in enumerate(means):
        ax.text(i, m + errs[i] + 1.5, f"{m:.1f}", ha="center", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"MNIST auxiliary-logit distillation (m={n_aux}, mean ± 95% CI, N={n_models})")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def plot_vs_aux(runs: list[dict[str, Any]], n_models: int, path: Path) -> None:
    """Mean test accuracy (95 % CI band) of every arm against the number of aux logits m.

    Args:
        runs: the `runs` blocks of results.json.
        n_models: N, for the title.
        path: PNG to write.
    """
    runs = sorted(runs, key=lambda r: r["n_aux"])
    ms = [r["n_aux"] for r in runs]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arm in ARMS:
        mean = [100 * r["summary"][arm]["mean"] for r in runs]
        ci = [100 * (r["summary"][arm]["ci95"] or 0.0) for r in runs]
        ax.errorbar(
            ms, mean, yerr=ci, marker="o", capsize=3, color=_COLORS[arm],
            label=_SHORT[arm].replace("\n", " "), ls=":" if arm == "reference" else "-",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_xlabel("auxiliary logits m")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Accuracy against m (mean ± 95% CI, N={n_models})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _save(fig, path)
