"""The student arms' part of the report: per evaluation, metric, arm and target the *effect
left*, (arm target − arm control) / (main target − main control), with a bootstrap CI over
runs, and the arm's own test against its control (exact permutation over run labels).

The arm's control is its own control students when it has them (`StudentArm.own_control`),
else the main control. Written to arms.json and arms.csv beside results.*.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from pydantic import BaseModel

from sl.evaluation.runs import permutation_test_over_runs
from sl.experiment.data_models import CONTROL, ExperimentCfg
from sl.experiment.paths import ExperimentPaths
from sl.utils.file_utils import write_json_atomic, write_text_atomic

N_BOOTSTRAP = 10_000


class ArmEffect(BaseModel):
    """One arm on one target in one evaluation and metric."""

    evaluation: str
    metric: str
    arm: str
    target: str
    arm_control: str  # the condition the arm is compared with
    arm_mean: float
    arm_control_mean: float
    undefended_mean: float  # the main arm's target students
    control_mean: float  # the main arm's control students
    effect_left: float | None  # None when the main arm shows no effect (0 denominator)
    ci_low: float | None
    ci_high: float | None
    p_vs_control: float | None
    test: str
    run_values: list[float]
    arm_control_values: list[float]


def arm_conditions(cfg: ExperimentCfg) -> dict[str, list[str]]:
    """Every arm's conditions (<arm>.<teacher>) -> the model names of their runs."""
    return {
        runs[0].condition: [r.name for r in runs]
        for arm in cfg.arms
        for teacher in cfg.arm_teachers(arm)
        if (runs := cfg.arm_runs(arm, teacher))
    }


def effect_left(
    arm: list[float], arm_control: list[float], undefended: list[float], control: list[float]
) -> tuple[float | None, float | None, float | None]:
    """The effect left and its 95 % percentile bootstrap CI, resampling each group's runs
    (seeded); None where the undefended effect is 0."""
    groups = [np.asarray(g, dtype=float) for g in (arm, arm_control, undefended, control)]
    denominator = groups[2].mean() - groups[3].mean()
    if denominator == 0:
        return None, None, None
    point = float((groups[0].mean() - groups[1].mean()) / denominator)
    rng = np.random.default_rng(0)
    means = [rng.choice(g, (N_BOOTSTRAP, len(g))).mean(1) for g in groups]
    below = means[2] - means[3]
    ok = below != 0
    ratios = (means[0] - means[1])[ok] / below[ok]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return point, float(low), float(high)


def arm_effects(
    cfg: ExperimentCfg, values: dict[tuple[str, str], dict[str, dict[str, list[float]]]]
) -> list[ArmEffect]:
    """Every arm's effect left. `values[(evaluation, metric)][condition][target]` holds each
    run's value (main and arm conditions alike)."""
    out = []
    for (evaluation, metric), by_condition in values.items():
        for arm in cfg.arms:
            for target in cfg.arm_teachers(arm):
                if target == CONTROL:
                    continue
                arm_control = f"{arm.name}.{CONTROL}" if arm.own_control else CONTROL
                a = by_condition[f"{arm.name}.{target}"][target]
                ac = by_condition[arm_control][target]
                u, c = by_condition[target][target], by_condition[CONTROL][target]
                point, low, high = effect_left(a, ac, u, c)
                p = permutation_test_over_runs(a, ac)
                out.append(
                    ArmEffect(
                        evaluation=evaluation, metric=metric, arm=arm.name, target=target,
                        arm_control=arm_control, arm_mean=float(np.mean(a)),
                        arm_control_mean=float(np.mean(ac)), undefended_mean=float(np.mean(u)),
                        control_mean=float(np.mean(c)), effect_left=point, ci_low=low,
                        ci_high=high, p_vs_control=p.p_value, test=p.test, run_values=a,
                        arm_control_values=ac,
                    )
                )  # fmt: skip
    return out


CSV_FIELDS = (
    "evaluation", "metric", "arm", "target", "arm_control", "arm_mean", "arm_control_mean",
    "undefended_mean", "control_mean", "effect_left", "ci_low", "ci_high", "p_vs_control",
)  # fmt: skip


def write_arm_effects(effects: list[ArmEffect], paths: ExperimentPaths) -> None:
    """arms.json (everything) and arms.csv (one row per evaluation, metric, arm, target)."""
    write_json_atomic(paths.arms_report, [e.model_dump(mode="json") for e in effects])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for e in effects:
        row = [getattr(e, f) for f in CSV_FIELDS]
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    write_text_atomic(paths.arms_report.with_suffix(".csv"), text.getvalue())


def format_arm_effects(effects: list[ArmEffect]) -> str:
    """The printed table: effect left per arm and target, with its CI and p vs its control."""

    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = [
        "student arms: effect left = (arm − its control) / (main target − main control), "
        "95 % bootstrap CI over runs; p: arm vs its control, permutation over runs"
    ]
    for e in effects:
        ci = f"[{num(e.ci_low, '.2f')}, {num(e.ci_high, '.2f')}]"
        lines.append(
            f"  {e.evaluation} {e.metric:8s} {e.arm:20s} {e.target:8s} "
            f"left {num(e.effect_left, '.2f'):>6s} {ci:16s} arm {e.arm_mean:.4g} vs "
            f"{e.arm_control} {e.arm_control_mean:.4g}, p = {num(e.p_vs_control, '.3f')}"
        )
    return "\n".join(lines)
