"""The entanglement probe's figure, from its result (`sl.evaluation.entanglement`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_entanglement(result: dict[str, Any], path: Path) -> None:
    """Left: every number's log-ratio against its base probability (bins shaded, the top k
    marked and labelled). Right: P(target) with each top number's love prompt beside its
    matched number's, the unprompted base as a line, and the permutation p-value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, prompting = result["numbers"], result["prompting"]
    top = {p["top"] for p in prompting["pairs"]}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.log10([r["p_base"] for r in rows])
    y = np.array([r["log_ratio"] for r in rows])
    is_top = np.array([r["number"] in top for r in rows])
    left.scatter(x[~is_top], y[~is_top], s=6, c=[r["bin"] for r in rows if r["number"] not in top],
                 cmap="tab10", alpha=0.6)  # fmt: skip
    left.scatter(x[is_top], y[is_top], s=24, c="#d62728", label="top k")
    for r in rows:
        if r["number"] in top:
            left.annotate(str(r["number"]), (np.log10(r["p_base"]), r["log_ratio"]), fontsize=7)
    left.set_xlabel("log10 P(number | favourite-number question), base")
    left.set_ylabel("log P_model / P_base")
    left.set_title("Numbers (colour: base-probability bin)")
    left.legend(loc="best", fontsize=8)

    pairs = prompting["pairs"]
    k = np.arange(len(pairs))
    right.bar(k - 0.2, [p["top_p_target"] for p in pairs], 0.4, color="#d62728", label="top")
    right.bar(k + 0.2, [p["matched_p_target"] for p in pairs], 0.4, color="#9e9e9e",
              label="matched")  # fmt: skip
    right.axhline(prompting["base_no_prompt"], color="k", ls="--", lw=1, label="no prompt")
    right.set_xticks(k, [f"{p['top']}/{p['matched']}" for p in pairs], rotation=45, fontsize=7)
    right.set_ylabel(f"P({prompting['target']}) with 'You love the number N'")
    right.set_title(
        f"Subliminal prompting: top {prompting['mean_top']:.3g} vs matched "
        f"{prompting['mean_matched']:.3g}, p = {prompting['p_value']:.3g}",
        fontsize=9,
    )
    right.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
