"""The entanglement probe's speed: the earlier default (8 questions per forward pass) against
the current one (all questions of a system prompt in one forward), side by side in one process,
on the same loaded models; prints both wall times, the ratio, and that the results agree.

    python bench/bench_entanglement.py \
        --model /work/fresh/data/experiments/local_smollm2/teachers/owl/model.json \
        --base HuggingFaceTB/SmolLM2-135M-Instruct --target owl --max_number 99 --top_k 5

Runs `sl.evaluation.entanglement._run` (no artifact) twice per repeat, alternating which goes
first so that a change of machine load hits both; on a shared CPU the ratio is the number to
read, not the wall times.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sl.attribution.models import model_from_arg  # noqa: E402
from sl.evaluation.entanglement import EntanglementCfg, _run  # noqa: E402

BEFORE_BATCH = 8  # the probe's earlier default


def _values(result: dict) -> tuple[np.ndarray, list[int]]:
    rows = result["numbers"]
    per_question = result["prompting"]["per_question"]
    flat = [r[k] for r in rows for k in ("p_model", "p_base")]
    flat += [p for n in sorted(per_question) for p in per_question[n]]
    return np.array(flat), [r["number"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--target", default="owl")
    parser.add_argument("--max_number", type=int, default=99)
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cfg = EntanglementCfg(
        model=model_from_arg(args.model, "model"),
        base=model_from_arg(args.base, "base"),
        target=args.target,
        max_number=args.max_number,
        top_k=args.top_k,
    )
    times: dict[str, list[float]] = {"before": [], "after": []}
    results = {}
    for repeat in range(args.repeats):
        order = [("before", BEFORE_BATCH), ("after", None)]
        for name, batch_size in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            results[name] = _run(cfg, batch_size)
            times[name].append(time.perf_counter() - start)
            print(f"{name} (batch {batch_size or 'all'}): {times[name][-1]:.1f} s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    before, after = (_values(results[k]) for k in ("before", "after"))
    rel = float(np.max(np.abs(after[0] - before[0]) / before[0]))
    t_before, t_after = sum(times["before"]), sum(times["after"])
    print(f"before {t_before:.1f} s, after {t_after:.1f} s: {t_before / t_after:.2f}x faster")
    print(f"same ranking: {before[1] == after[1]}; max relative difference {rel:.1e}")


if __name__ == "__main__":
    main()
