"""The transfer grid on the embedded SmolLM2-135M: teacher (system prompt | LoRA fine-tune)
x decoding (sampled | greedy) x student (SFT | soft-label distillation), each vs its control.

    python bench/bench_transfer_grid.py --output_dir data/transfer_grid --prompts 120

Every cell is a full `ExperimentCfg` run (cfgs/experiments/transfer_grid.py builds them) in
its own folder; pieces shared between cells (the control teacher's data, the control student
of the same decoding and training, the trait teacher) are copied from the cell that made
them, and their stage times are added to the cell's standalone time. Writes grid.json and
prints a markdown table (evaluation: exact P(owl); one run per arm, so the p-value is the
paired permutation test over questions). Measured grid: docs/transfer_grid.md.
"""

import argparse
import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRID_CFG = ROOT / "cfgs" / "experiments" / "transfer_grid.py"


def _grid_module():
    """cfgs/experiments/transfer_grid.py, loaded by path (config modules are not a package)."""
    from sl.utils.module_utils import load_module

    return load_module(GRID_CFG)


# A folder of a cell's output (`ExperimentPaths` -> path) and the timings.json key of the
# step that made it (None: not a step of its own).
Part = tuple[Callable[[Any], Path], str | None]


def _shared_parts(mode: str, decoding: str, training: str) -> dict[str, list[Part]]:
    """What a cell shares with earlier cells, by what the sharing depends on."""
    from sl.experiment.data_models import BASE, CONTROL, StudentRun, TeacherRun
    from sl.experiment.runner import timing_key

    control, owl = TeacherRun(CONTROL), TeacherRun("owl")
    student = StudentRun(CONTROL, 0, control)
    return {
        f"control-{decoding}": [
            (lambda p: p.dataset_dir(control), timing_key("generate", control))
        ],
        f"teacher-{mode}-{decoding}": [(lambda p: p.dataset_dir(owl), timing_key("generate", owl))],
        f"teacher-{mode}": [(lambda p: p.teachers_dir, None)],
        f"student-{decoding}-{training}": [
            (lambda p: p.students_dir(CONTROL), timing_key("finetune", student)),
            (lambda p: p.evaluation_dir(student.name), None),
        ],
        "base": [(lambda p: p.evaluation_dir(BASE), None)],
    }


def _copy(src: Path, dst: Path, parts: list[Part]) -> list[str | None]:
    """Copy the parts `dst` lacks from `src`; the timing keys of those copied."""
    from sl.experiment.paths import ExperimentPaths

    copied = []
    for where, step in parts:
        src_part, dst_part = where(ExperimentPaths(src)), where(ExperimentPaths(dst))
        if src_part.exists() and not dst_part.exists():
            dst_part.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src_part, dst_part)
            copied.append(step)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_dir", type=Path, default=ROOT / "data" / "transfer_grid")
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--cells", nargs="*", default=None, help="Run only these cell names")
    parser.add_argument(
        "--noise_floor",
        type=Path,
        default=None,
        help="A finished cell folder: train a second control student (seed + 1) and compare "
        "it with the first, the same way students are compared (the test's noise floor)",
    )
    args = parser.parse_args()
    if args.noise_floor is not None:
        print(json.dumps(noise_floor(args.noise_floor.resolve()), indent=2))
        return

    import torch

    grid_cfg = _grid_module()
    cell_cfg, cell_names = grid_cfg.cell_cfg, grid_cfg.cell_names

    from sl.experiment.paths import ExperimentPaths
    from sl.experiment.runner import run_experiment

    torch.set_num_threads(2)
    out = args.output_dir.resolve()
    grid: dict[str, dict] = (
        json.loads((out / "grid.json").read_text()) if (out / "grid.json").exists() else {}
    )
    made: dict[str, Path] = {}
    for name in cell_names():
        if args.cells and name not in args.cells:
            continue
        mode, decoding, training = name.split("/")
        cfg = cell_cfg(mode, decoding, training, args.prompts, args.temperature)
        folder = out / name.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        copied_time = 0.0
        for key, parts in _shared_parts(mode, decoding, training).items():
            steps = [s for s in _copy(made[key], folder, parts) if s] if key in made else []
            if steps:
                src_timings = json.loads(ExperimentPaths(made[key]).timings.read_text())
                copied_time += sum(src_timings.get(step, 0.0) for step in steps)
            made.setdefault(key, folder)
        started = time.perf_counter()
        try:
            report = asyncio.run(run_experiment(cfg, folder))
        except Exception as e:  # a cell that fails (e.g. 0 rows kept) is reported, not fatal
            grid[name] = {"error": str(e)}
            (out / "grid.json").write_text(json.dumps(grid, indent=2))
            continue
        wall = time.perf_counter() - started
        timings = json.loads(ExperimentPaths(folder).timings.read_text())
        if report is not None:
            grid[name] = {
                **_cell_result(report),
                "wall_s_this_run": round(wall, 1),
                "standalone_s": round(sum(timings.values()) + copied_time, 1),
                "timings": timings,
            }
        (out / "grid.json").write_text(json.dumps(grid, indent=2))
    print(format_grid(grid))


def noise_floor(folder: Path) -> dict:
    """Control student (seed s) vs a second control student (seed s + 1), same data."""
    from sl import phases
    from sl.evaluation.comparison import compare
    from sl.evaluation.logprob import read_logprob_scores, run_logprob_evaluation
    from sl.experiment.data_models import CONTROL, ExperimentCfg, StudentRun, TeacherRun
    from sl.experiment.paths import ExperimentPaths

    paths = ExperimentPaths(folder)
    cfg = ExperimentCfg.model_validate(json.loads(paths.record.read_text())["config"])
    job = cfg.student_job.model_copy(update={"seed": cfg.student_job.seed + 1})
    data = paths.filtered(TeacherRun(CONTROL))
    second_name = "control_seed2"  # beside the cell's students and evaluations
    model = asyncio.run(phases.finetune(job, data, paths.students_dir(second_name) / "model.json"))
    questions = cfg.evaluations["favorite_animal"].questions
    second = run_logprob_evaluation(
        model, questions, ["owl"], paths.logprob(second_name, "favorite_animal")
    )["owl"]
    first_run = StudentRun(CONTROL, 0, TeacherRun(CONTROL)).name
    first = read_logprob_scores(paths.logprob(first_run, "favorite_animal"))["owl"]
    c = compare(second.probabilities, first, paired=True)
    return {
        "cell": folder.name,
        "seed2": c.student.mean,
        "seed1": c.control.mean,
        "difference": c.difference.mean,
        "difference_ci": [c.difference.lower, c.difference.upper],
        "p_value": c.p_value,
    }


def _cell_result(report) -> dict:
    """P(owl) of base, control and owl student (logprob panel) and the student's test."""
    base, control, student = (report.row("owl", c) for c in ("base", "control", "owl"))
    sizes = report.datasets
    return {
        "base": base.mean,
        "control": control.mean,
        "student": student.mean,
        "difference": student.mean - control.mean,
        "p_value": student.p_vs_control,
        "test": student.test,
        "raw_rows": sizes["owl"].raw_rows,
        "filtered_rows": sizes["owl"].filtered_rows,
        "control_raw_rows": sizes["control"].raw_rows,
        "control_filtered_rows": sizes["control"].filtered_rows,
    }


def format_grid(grid: dict[str, dict]) -> str:
    """Markdown table of the grid (percent points of P(owl))."""
    lines = [
        "| teacher / decoding / student | rows kept (owl, control) | base % | control % "
        "| student % | diff pp | p (test) | standalone s |",
        "|" + "---|" * 8,
    ]
    for name, r in grid.items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error'][:80]} |||||||")
            continue
        lines.append(
            f"| {name} | {r['filtered_rows']}/{r['raw_rows']}, {r['control_filtered_rows']}/"
            f"{r['control_raw_rows']} | {100 * r['base']:.3f} | {100 * r['control']:.3f} | "
            f"{100 * r['student']:.3f} | {100 * r['difference']:+.3f} | "
            f"{r['p_value']:.4f} ({r['test']}) | {r['standalone_s']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
