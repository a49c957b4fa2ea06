"""Run an experiment stage by stage; every artifact on disk, every stage resumable.

The output folder's layout is `sl.experiment.paths` (`ExperimentPaths`). Each arm (control
and every target) has n_runs = n_teacher_replicates x n_student_replicates student runs: run r
learns from teacher replicate r // n_student_replicates (replicate 0 when the arm has one
teacher, e.g. the base-model control) with the seed student_job.seed + r, so run r of every
arm starts from the same seed. Every model is scored on every target; the report (report.py)
treats each run as one unit. `stage_table` is the one place that decides what each stage runs.
"""

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from sl.errors import UserError
from sl.experiment.data_models import STAGES, ExperimentCfg, StudentRun
from sl.experiment.paths import ExperimentPaths
from sl.experiment.progress import StageProgress
from sl.experiment.report import ExperimentReport, build_report
from sl.experiment.steps import (
    MeteredLabels,
    Step,
    StepFn,
    arms_step,
    arms_steps,
    evaluate_step,
    finetune_student,
    generate_teacher_dataset,
    probed_teachers,
    scored_models,
    student_runs,
    teacher_runs,
)
from sl.experiment.workers import announce, completed, release_memory, worker_pool
from sl.llm.engines import engine_of
from sl.utils.artifact import folder_artifact
from sl.utils.file_utils import read_json_file, write_json_atomic
from sl.utils.logging_setup import log_file


async def _report_step(cfg: ExperimentCfg, paths: ExperimentPaths, _: Step) -> ExperimentReport:
    return build_report(cfg, paths)


def stage_table(cfg: ExperimentCfg) -> dict[str, tuple[list[Step], StepFn]]:
    """stage -> (its steps, the function that runs one step): the one place that decides
    what each stage does (how a student trains is its job's, see `finetune_student`)."""
    return {
        "generate": ([*teacher_runs(cfg)], generate_teacher_dataset),
        "arms": ([*arms_steps(cfg)], arms_step),
        "finetune": ([*student_runs(cfg)], finetune_student),
        "evaluate": (
            [
                *scored_models(cfg),
                *(MeteredLabels(t) for t in teacher_runs(cfg)),
                *probed_teachers(cfg),
            ],
            evaluate_step,
        ),
        "report": ([None], _report_step),
    }


def default_workers(cfg: ExperimentCfg) -> int:
    """Worker processes for a stage's steps: 2 for open models on a CPU of 2 or more cores
    (two 1-thread processes did a third more distillation steps than one of 2 threads),
    else 1."""
    from sl.external.torch_models import resolve_device

    local = engine_of(cfg.teacher_model).runs_locally
    return 2 if local and resolve_device() == "cpu" and (os.cpu_count() or 1) >= 2 else 1


async def run_experiment(
    cfg: ExperimentCfg, output_dir: Path, stages: Sequence[str] = STAGES, workers: int = 1
) -> ExperimentReport | None:
    """Run the chosen stages in order; finished work on disk is skipped, partial work resumed.

    With `workers` > 1 the steps of a stage (teachers, students, scored models) run in that
    many worker processes, each with an equal share of the CPU's threads (`default_workers`).
    Returns the report when the report stage ran.
    """
    from sl.llm.services import check_ready

    if workers < 1:
        raise UserError(f"workers must be at least 1, not {workers}", param="workers")
    paths = ExperimentPaths(Path(output_dir))
    judges = [j.judge_model for e in cfg.evaluations.values() for j in e.judgment_map.values()]
    check_ready([cfg.teacher_model, cfg.student_job.source_model, *judges])
    # The folder is the experiment's without its extensions (arms, probe): adding an arm
    # reuses every teacher, dataset and student already there.
    config = cfg.model_dump(mode="json", exclude=set(cfg.EXTENSIONS))
    with (
        folder_artifact(paths.root, cfg.folder_key(), config, paths.record.name),
        log_file(paths.root / "logs" / "run.log"),
    ):
        logger.debug("stages {} with {} worker(s) into {}", list(stages), workers, paths.root)
        return await _run_stages(cfg, paths, stages, workers)


async def _run_stages(
    cfg: ExperimentCfg, paths: ExperimentPaths, stages: Sequence[str], workers: int
) -> ExperimentReport | None:
    timings = read_json_file(paths.timings, "timings") if paths.timings.exists() else {}
    if not isinstance(timings, dict):
        timings = {}
    table = stage_table(cfg)
    chosen = [stage for stage in STAGES if stage in stages]
    result = None

    def record(key: str, seconds: float) -> None:
        # Summed over reruns: a resumed stage adds its remaining time, a skipped one ~0.
        timings[key] = round(timings.get(key, 0.0) + seconds, 2)
        write_json_atomic(paths.timings, timings)

    for stage in chosen:
        items, run_step = table[stage]
        started = time.perf_counter()
        with StageProgress(stage, len(items)) as progress:
            if workers == 1 or len(items) < 2:
                for item in items:
                    name = item.name if item else stage
                    progress.running(name)
                    step_start = time.perf_counter()
                    if (out := await run_step(cfg, paths, item)) is not None:
                        result = out
                    seconds = time.perf_counter() - step_start
                    record(timing_key(stage, item), seconds)
                    progress.step_done(name, seconds)
            else:
                ordered = sorted(items, key=lambda i: -_work_size(paths, i))
                # A pool per stage: its memory (models, caches) is freed before the next.
                with worker_pool(workers, progress) as pool:
                    futures = {pool.submit(_worker_step, stage, cfg, paths, i): i for i in ordered}
                    for future in completed(futures):
                        item = futures[future]
                        record(timing_key(stage, item), future.result())
                        progress.step_done(item.name if item else stage, future.result())
        if len(items) > 1:
            record(f"wall/{stage}", time.perf_counter() - started)
    return result


def _work_size(paths: ExperimentPaths, item: Step) -> int:
    """A student run's work, for running the largest first (the last step to finish runs
    alone): the size of its kept rows; 0 for other steps, which keep their order."""
    if isinstance(item, StudentRun):
        rows = paths.filtered(item.source)
        return rows.stat().st_size if rows.exists() else 0
    return 0


def _worker_step(stage: str, cfg: ExperimentCfg, paths: ExperimentPaths, item: Step) -> float:
    """Run one step of `stage` in a worker process; returns its seconds."""

    async def step() -> None:
        await stage_table(cfg)[stage][1](cfg, paths, item)

    announce(f"{stage} {item.name if item else ''}".strip())
    started = time.perf_counter()
    try:
        asyncio.run(step())
    finally:
        release_memory()
    return time.perf_counter() - started


def timing_key(stage: str, item: Step) -> str:
    """A step's key in timings.json: `<stage>/<teacher, run or model name>`, or the stage."""
    return f"{stage}/{item.name}" if item else stage
