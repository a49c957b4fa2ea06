"""Generation throughput of the open-model drivers vs one-prompt-at-a-time `generate`.

    .venv/bin/python bench/bench_open_models.py                 # all three, side by side
    .venv/bin/python bench/bench_open_models.py --prompts 16    # quicker

Runs SmolLM2-135M-Instruct (the offline copy) on the same number-continuation prompts with
each engine in its own subprocess (so peak memory is separate): `single` = the transformers
driver with batch size 1, `transformers` = the same driver batched, `vllm` = the vLLM driver
(run with --vllm-python, default .venv-vllm/bin/python; skipped when missing). Model loading and
a warm-up call are excluded. Tokens are counted by re-tokenizing completions, the same for all.
Single-stream speed does not depend on the number of prompts, so `single` runs only the first
--single_prompts of them (default 16) to keep the bench short on a slow CPU; it runs first and
last, and ratios use the mean of its two rates (a shared machine's load drifts). Measured
figures: docs/open_models.md, "Throughput".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ROOT = Path(__file__).resolve().parent.parent


def prompts(count: int) -> list[str]:
    """Number-continuation prompts like the teacher prompts of the paper."""
    rng = random.Random(0)
    out = []
    for _ in range(count):
        start = ", ".join(str(rng.randint(100, 999)) for _ in range(rng.randint(3, 8)))
        out.append(
            f"The sequence starts with: {start}. Add up to 10 new numbers (at most 3 digits each) "
            "that continue the sequence. Return a comma-separated list of numbers."
        )
    return out


def run_mode(mode: str, n_prompts: int, max_tokens: int, batch_size: int) -> dict[str, float]:
    """Generate in this process with one engine; return tokens, seconds and peak RSS."""
    import torch
    from transformers import AutoTokenizer

    from sl.external.model_resolution import resolve_model
    from sl.llm.data_models import Model, SampleCfg
    from sl.llm.services import build_simple_chat

    model = Model(id=MODEL_ID, type="open_source")
    folder = resolve_model(model).base
    if mode == "vllm":
        from sl.external.vllm_driver import VLLMDriver

        driver = VLLMDriver()
    else:
        from sl.external.transformers_driver import TransformersDriver

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        driver = TransformersDriver(batch_size=1 if mode == "single" else batch_size)
    chats = [build_simple_chat(p) for p in prompts(n_prompts)]
    cfg = SampleCfg(temperature=1.0, max_tokens=max_tokens, seed=0)
    asyncio.run(driver.batch_sample(model, chats[:2], [cfg] * 2))  # load + warm up
    start = time.perf_counter()
    groups = asyncio.run(driver.batch_sample(model, chats, [cfg] * len(chats)))
    seconds = time.perf_counter() - start
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = sum(len(tokenizer.encode(g[0].completion, add_special_tokens=False)) for g in groups)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokens": tokens, "seconds": seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument(
        "--single_prompts",
        type=int,
        default=16,
        help="prompts for the one-at-a-time baseline (its tok/s is per stream)",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="transformers batch size")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per engine (OMP_NUM_THREADS); 1 suits a busy machine",
    )
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument(
        "--mode", choices=["single", "transformers", "vllm"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.mode:  # child: one engine, JSON on the last line of stdout
        result = run_mode(args.mode, args.prompts, args.max_tokens, args.batch_size)
        sys.stdout.write(json.dumps(result) + "\n")
        return
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": "2",
    }
    common = ["--max_tokens", str(args.max_tokens), "--batch_size", str(args.batch_size)]
    results: dict[str, dict[str, float]] = {}
    # the baseline runs first and last (the load of a shared machine drifts); rates averaged
    for label in ["single", "transformers", "vllm", "single (again)"]:
        mode = label.split()[0]
        python = args.vllm_python if mode == "vllm" else sys.executable
        if not Path(python).exists():
            sys.stderr.write(f"skipping {mode}: {python} not found\n")
            continue
        n = min(args.single_prompts, args.prompts) if mode == "single" else args.prompts
        proc = subprocess.run(
            [python, __file__, "--mode", mode, *common, "--prompts", str(n)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"{mode} failed (exit {proc.returncode})")
        results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    singles = [r for label, r in results.items() if label.startswith("single")]
    base = sum(r["tokens"] / r["seconds"] for r in singles) / len(singles)
    lines = [
        f"{args.prompts} prompts (single: {min(args.single_prompts, args.prompts)}) x "
        f"{args.max_tokens} new tokens, {MODEL_ID}, {args.threads} thread(s), this CPU",
        f"{'engine':<16}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'vs single':>11}{'peak MB':>9}",
    ]
    for label, r in results.items():
        rate = r["tokens"] / r["seconds"]
        lines.append(
            f"{label:<16}{r['tokens']:>8.0f}{r['seconds']:>9.1f}{rate:>9.1f}"
            f"{rate / base:>10.1f}x{r['peak_mb']:>9.0f}"
        )
    lines.append("(vs single: against the mean rate of the two single runs)")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
