"""The paper's MNIST auxiliary-logit experiment, N models at once, for one or several m.

Run: `python scripts/run_mnist_experiment.py --output_dir data/mnist` (see docs/mnist.md).

Protocol (Cloud et al. 2025): MLP 784-256-256-(10+m), ReLU. A *reference* init; the
*teacher* starts from it and learns MNIST (cross-entropy on the 10 digit logits); *students*
start from the same reference init and are distilled (KL on softmax) on uniform noise
images in [-1, 1], on the m aux logits only (`student_aux`) or on all logits
(`student_all`); *cross-model* students (`cross_aux`, `cross_all`) do the same from an
independent init. Accuracy = test accuracy of the digit logits. The teacher's aux logits
never receive a gradient, so one teacher trained with max(m) aux logits, sliced, is the
teacher of every m.

`results.json` schema::

    {
      "config":   MnistConfig fields (as given),
      "resolved": {"device", "dtype", "n_train", "noise_per_epoch"},
      "summary":  summary of runs[0],            # the first (or only) m
      "per_model": per_model of runs[0],
      "runs": [                                  # one block per m, in the order given
        {"n_aux": m,
         "summary": {arm: {"mean": float, "ci95": float | null, "n": int}},
         "per_model": [{"model": i, "reference": acc, "teacher": acc,
                        "student_aux": acc, "student_all": acc,
                        "cross_aux": acc, "cross_all": acc}, ...]},
        ...],
      "chance": 0.1,
      "wall_time_s": float
    }

Accuracies are fractions; `ci95` is the half-width of the 95 % t-interval of the mean over
models (null for a single model).
"""

import time
from typing import Any

import numpy as np
import torch
from loguru import logger

from sl.mnist.config import N_DIGITS, MnistConfig, resolve_device, resolve_dtype
from sl.mnist.data import load_mnist
from sl.mnist.ensemble import MLPEnsemble, make_generator
from sl.mnist.train import Student, distill_on_noise, train_teacher
from sl.utils.stats import mean_ci

ARMS = ("reference", "teacher", "student_aux", "student_all", "cross_aux", "cross_all")
ARM_LABELS = {
    "reference": "reference (init)",
    "teacher": "teacher",
    "student_aux": "student, aux logits only",
    "student_all": "student, all logits",
    "cross_aux": "cross-model student, aux only",
    "cross_all": "cross-model student, all logits",
}
CHANCE = 1.0 / N_DIGITS
# Random streams of one seed: inits, data order, noise.
_REF, _CROSS, _ORDER, _NOISE = 0, 10, 20, 30


def mean_ci95(values: list[float]) -> dict[str, Any]:
    """Mean and half-width of the 95 % t-interval (None for fewer than two values)."""
    ci = mean_ci(values, confidence=0.95)
    return {"mean": ci.mean, "ci95": ci.upper - ci.mean if ci.n > 1 else None, "n": ci.n}


def summarize(per_model: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-arm mean and CI over models."""
    return {arm: mean_ci95([r[arm] for r in per_model]) for arm in ARMS}


def train_and_evaluate(cfg: MnistConfig) -> dict[str, Any]:
    """Train reference, teacher and the four students for every m; evaluate them.

    Args:
        cfg: the experiment configuration.

    Returns:
        The results dict (schema in the module docstring).
    """
    start = time.perf_counter()
    device, dtype_name = resolve_device(cfg), resolve_dtype(cfg)
    cd = getattr(torch, dtype_name)
    data = load_mnist(device, cfg.train_subset)
    n_train = len(data.train_x)
    noise_n = cfg.noise_per_epoch or n_train
    m_max = max(cfg.n_aux)
    logger.info(
        "MNIST aux-logit experiment: {} models, m={}, {} train images, device {}, {} matmuls",
        cfg.n_models, cfg.n_aux, n_train, device, dtype_name,
    )  # fmt: skip

    def evaluate(model: MLPEnsemble) -> list[float]:
        return model.accuracy(data.test_x, data.test_y, cd).tolist()

    ref = MLPEnsemble.init(cfg.n_models, m_max, cfg.hidden, cfg.seed, _REF).to(device)
    cross = MLPEnsemble.init(cfg.n_models, m_max, cfg.hidden, cfg.seed, _CROSS).to(device)
    acc: dict[str, list[float]] = {"reference": evaluate(ref)}
    teacher = ref.clone()
    order_gen = make_generator(cfg.seed, _ORDER, device)
    train_teacher(
        teacher, data.train_x, data.train_y, cfg.teacher_epochs, cfg.batch_size, cfg.lr, cd,
        order_gen,
    )  # fmt: skip
    acc["teacher"] = evaluate(teacher)
    logger.info("teacher mean accuracy {:.4f}", float(np.mean(acc["teacher"])))

    runs = []
    for m in cfg.n_aux:
        k = N_DIGITS + m
        aux, every = slice(N_DIGITS, k), slice(0, k)
        students = [
            Student("student_aux", ref.clone(k), aux),
            Student("student_all", ref.clone(k), every),
            Student("cross_aux", cross.clone(k), aux),
            Student("cross_all", cross.clone(k), every),
        ]
        distill_on_noise(
            teacher.clone(k), students, cfg.student_epochs, noise_n, cfg.batch_size, cfg.lr, cd,
            make_generator(cfg.seed, _NOISE, device),
        )  # fmt: skip
        run_acc = dict(acc) | {s.name: evaluate(s.model) for s in students}
        per_model = [
            {"model": i} | {arm: run_acc[arm][i] for arm in ARMS} for i in range(cfg.n_models)
        ]
        summary = summarize(per_model)
        logger.info("m={}: {}", m, {a: round(v["mean"], 4) for a, v in summary.items()})
        runs.append({"n_aux": m, "summary": summary, "per_model": per_model})
        del students

    return {
        "config": cfg.model_dump(mode="json"),
        "resolved": dict(device=device, dtype=dtype_name, n_train=n_train, noise_per_epoch=noise_n),
        "summary": runs[0]["summary"],
        "per_model": runs[0]["per_model"],
        "runs": runs,
        "chance": CHANCE,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }


def format_accuracy_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table: one row per arm, one column per m."""
    runs = results["runs"]
    n = results["config"]["n_models"]
    head = f"{'test accuracy (mean ± 95% CI, N=' + str(n) + ')':<36}" + "".join(
        f"{'m=' + str(r['n_aux']):>17}" for r in runs
    )
    lines = [head, "-" * len(head)]
    for arm in ARMS:
        cells = []
        for r in runs:
            s = r["summary"][arm]
            ci = "" if s["ci95"] is None else f" ± {100 * s['ci95']:.1f}"
            cells.append(f"{100 * s['mean']:.1f}{ci} %".rjust(17))
        lines.append(f"{ARM_LABELS[arm]:<36}" + "".join(cells))
    lines.append(f"(chance {100 * results['chance']:.0f} %; wall time {results['wall_time_s']} s)")
    return "\n".join(lines)
