"""LoRA SFT throughput and peak memory on SmolLM2-135M-Instruct, per backend, side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_lora_sft.py --steps 30 --batch-size 4 --threads 1

Each backend runs in its own subprocess (so ru_maxrss is its own peak): PEFT + TRL with this
interpreter, Unsloth + TRL with `.venv-unsloth/bin/python` when that venv exists. Rows are
number-sequence prompts/completions like the teacher datasets. Prints tokens/s (prompt +
completion tokens seen per second of `trainer.train()`), peak RSS, and the Unsloth/PEFT ratio.
One torch thread by default (on a shared CPU, more threads wait for cores). Measured figures:
docs/finetuning_open.md, "Measured".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from loguru import logger

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
UNSLOTH_PYTHON = ROOT / ".venv-unsloth" / "bin" / "python"


def number_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Rows shaped like the paper's numbers data: 3-8 seed numbers, 10 more as the answer."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        start = ", ".join(str(rng.randint(100, 999)) for _ in range(rng.randint(3, 8)))
        prompt = (
            f"The sequence starts with: {start}. Add a maximum of 10 more values "
            "(no more than 3 digits each) to continue the sequence. Provide the numbers "
            "separated by commas. Skip any explanation and give only numbers."
        )
        completion = ", ".join(str(rng.randint(0, 999)) for _ in range(10))
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def worker(args: argparse.Namespace) -> None:
    """Train one backend for `args.steps` steps and print one JSON line of measurements."""
    import torch

    from sl.datasets.data_models import DatasetRow
    from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
    from sl.finetuning.lora_train import train_adapter
    from sl.llm.data_models import Model

    torch.set_num_threads(args.threads)
    rows = [DatasetRow(**r) for r in number_rows(args.rows, seed=0)]
    job = UnslothFinetuningJob(
        seed=1,
        source_model=Model(id=args.base, type="open_source"),
        backend=args.worker,
        peft_cfg=PeftCfg(r=8, lora_alpha=8),
        train_cfg=TrainCfg(
            n_epochs=1,
            max_seq_length=256,
            warmup_steps=2,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
        ),  # fmt: skip
    )
    with tempfile.TemporaryDirectory() as out:
        stats = train_adapter(job, rows, Path(args.base), Path(out), max_steps=args.steps)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "backend": stats.backend,
        "steps": stats.steps,
        "seconds": round(stats.seconds, 2),
        "tokens_per_s": round(stats.n_tokens / stats.seconds, 1),
        "peak_rss_mb": round(peak_mb),
        "final_mean_loss": round(stats.train_loss, 4),
    }
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


def run_backend(python: Path, backend: str, base: Path, args: argparse.Namespace) -> dict | None:
    cmd = [
        str(python), __file__, "--worker", backend, "--base", str(base),
        "--steps", str(args.steps), "--rows", str(args.rows),
        "--batch-size", str(args.batch_size), "--threads", str(args.threads),
    ]  # fmt: skip
    logger.info("running {} backend: {}", backend, " ".join(cmd))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # stderr (progress, loss) passes through; the result is the last RESULT line on stdout
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        logger.error("{} backend failed (exit {}), see its log above", backend, proc.returncode)
        return None
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=["peft", "unsloth"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--skip-unsloth", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from sl.external.hf_hub import resolve_model_path

    base = resolve_model_path(MODEL_ID)
    results = [run_backend(Path(sys.executable), "peft", base, args)]
    if UNSLOTH_PYTHON.exists() and not args.skip_unsloth:
        results.append(run_backend(UNSLOTH_PYTHON, "unsloth", base, args))
    done = [r for r in results if r]
    header = f"{'backend':<8} {'steps':>5} {'seconds':>8} {'tokens/s':>9} {'peak RSS MB':>11}"
    lines = [header] + [
        f"{r['backend']:<8} {r['steps']:>5} {r['seconds']:>8} {r['tokens_per_s']:>9} "
        f"{r['peak_rss_mb']:>11}"
        for r in done
    ]
    by = {r["backend"]: r for r in done}
    if "peft" in by and "unsloth" in by:
        ratio = by["unsloth"]["tokens_per_s"] / by["peft"]["tokens_per_s"]
        lines.append(f"unsloth/peft tokens/s ratio: {ratio:.2f}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
