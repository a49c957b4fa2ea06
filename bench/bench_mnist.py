"""Batched-ensemble MNIST experiment vs a plain per-model PyTorch loop, side by side.

    python bench/bench_mnist.py                     # 8 models, 1+1 epochs: loop vs fp32 vs bf16
    python bench/bench_mnist.py --full              # also time the paper config (100 models, 5+5)
    python bench/bench_mnist.py --full --skip_compare
    python bench/bench_mnist.py --full --skip_compare --full_scale 0.1   # 10 % of the steps

The loop trains one `nn.Sequential` per model, one after another (teacher, then the four
students, each running the teacher on its own noise batches), with the same
hyperparameters. Prints wall times, the speed-up, the accuracy tables, the load average and
the peak RSS (ru_maxrss). Times are only comparable within one run (shared, noisy CPUs).
Measured figures: docs/mnist.md, "Speed".
"""

import argparse
import copy
import os
import resource
import time

import torch
import torch.nn.functional as F
from loguru import logger
from torch import nn

from sl.mnist.config import N_DIGITS, MnistConfig
from sl.mnist.data import load_mnist
from sl.mnist.experiment import ARMS, format_accuracy_table, summarize, train_and_evaluate


def _mlp(n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n_out),
    )  # fmt: skip


@torch.no_grad()
def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x)[:, :N_DIGITS].argmax(1) == y).double().mean().item()


def per_model_loop(cfg: MnistConfig) -> dict:
    """The plain baseline: every model trained on its own, one after another."""
    m = cfg.n_aux[0]
    data = load_mnist("cpu", cfg.train_subset)
    n_noise, bs = cfg.noise_per_epoch or len(data.train_x), cfg.batch_size
    per_model = []
    for i in range(cfg.n_models):
        torch.manual_seed(cfg.seed * 1000 + i)
        ref, cross = _mlp(N_DIGITS + m, cfg.hidden), _mlp(N_DIGITS + m, cfg.hidden)
        teacher = copy.deepcopy(ref)
        opt = torch.optim.Adam(teacher.parameters(), lr=cfg.lr)
        for _ in range(cfg.teacher_epochs):
            for idx in torch.randperm(len(data.train_x)).split(bs):
                loss = F.cross_entropy(teacher(data.train_x[idx])[:, :N_DIGITS], data.train_y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        rec = {"model": i, "reference": _acc(ref, data.test_x, data.test_y)}
        rec["teacher"] = _acc(teacher, data.test_x, data.test_y)
        for name, init, cols in [
            ("student_aux", ref, slice(N_DIGITS, None)), ("student_all", ref, slice(None)),
            ("cross_aux", cross, slice(N_DIGITS, None)), ("cross_all", cross, slice(None)),
        ]:  # fmt: skip
            student = copy.deepcopy(init)
            opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
            for _ in range(cfg.student_epochs):
                for start in range(0, n_noise, bs):
                    noise = torch.rand(min(bs, n_noise - start), 784) * 2 - 1
                    with torch.no_grad():
                        target = F.log_softmax(teacher(noise)[:, cols], dim=1)
                    logp = F.log_softmax(student(noise)[:, cols], dim=1)
                    loss = F.kl_div(logp, target, log_target=True, reduction="batchmean")
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            rec[name] = _acc(student, data.test_x, data.test_y)
        per_model.append(rec)
    summary = summarize(per_model)
    return {"config": cfg.model_dump(), "runs": [{"n_aux": m, "summary": summary}], "chance": 0.1}


def _timed(label: str, fn, *args) -> tuple[dict, float]:  # noqa: ANN001
    t = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t
    print(f"{label:<40} {dt:8.1f} s   (load avg {os.getloadavg()[0]:.1f})", flush=True)
    return out, dt


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n_models", type=int, default=8)
    p.add_argument("--epochs", type=int, default=1, help="teacher and student epochs")
    p.add_argument("--full", action="store_true", help="also time the paper config")
    p.add_argument("--skip_compare", action="store_true", help="only the --full timing")
    p.add_argument(
        "--full_scale", type=float, default=1.0,
        help="--full on this fraction of the images per epoch (all 100 models, 5+5 epochs); "
        "the time is extrapolated linearly to the whole config",
    )  # fmt: skip
    args = p.parse_args()
    logger.remove()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    if not args.skip_compare:
        small = dict(
            n_models=args.n_models, teacher_epochs=args.epochs, student_epochs=args.epochs,
            device="cpu",
        )  # fmt: skip
        loop, t_loop = _timed("per-model loop (fp32)", per_model_loop, MnistConfig(**small))
        rows = {"loop fp32": loop}
        for dt in ("float32", "bfloat16"):
            res, t = _timed(
                f"batched ensemble ({dt})", train_and_evaluate, MnistConfig(**small, dtype=dt)
            )  # noqa: E501
            print(f"  speed-up vs loop: {t_loop / t:.2f}x")
            rows[f"ensemble {dt}"] = res
        print(f"\nmean test accuracy (%), N={args.n_models}, {args.epochs}+{args.epochs} epochs")
        print(f"{'':<14}" + "".join(f"{a:>13}" for a in ARMS))
        for name, res in rows.items():
            s = res["runs"][0]["summary"]
            print(f"{name:<14}" + "".join(f"{100 * s[a]['mean']:13.1f}" for a in ARMS))
        print(f"peak RSS so far: {_rss_gb():.2f} GB")
    if args.full:
        res, t = _timed(
            "paper config (ensemble, default dtype)", train_and_evaluate, MnistConfig(device="cpu")
        )  # noqa: E501
        print(format_accuracy_table(res))
        print(f"paper config: {t / 60:.1f} min; peak RSS {_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
