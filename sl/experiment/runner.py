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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from tqdm import tqdm

from sl import phases
from sl.config import get_settings
from sl.errors import UserError
from sl.evaluation.analysis import analyze_runs, analyze_scores
from sl.evaluation.logprob import read_logprob_scores, run_logprob_evaluation
from sl.evaluation.services import read_evaluation_results
from sl.experiment import transfer
from sl.experiment.data_models import (
    BASE,
    CONTROL,
    STAGES,
    ExperimentCfg,
    StudentRun,
    TeacherRun,
)
from sl.experiment.label_leak import measure_label_leak, read_label_leak
from sl.experiment.paths import ExperimentPaths
from sl.experiment.report import (
    ExperimentReport,
    dataset_sizes,
    report_panel,
    write_report,
)
from sl.llm.data_models import Model
from sl.llm.engines import engine_of
from sl.utils.artifact import folder_artifact
from sl.utils.file_utils import read_json_file, read_json_model, write_json_atomic


@dataclass(frozen=True)
class ScoredModel:
    """One model the evaluate stage scores, by its name in evaluations/."""

    name: str


@dataclass(frozen=True)
class MeteredLabels:
    """The labels a teacher replicate's students learn from, measured by the leak meter
    (an evaluate-stage step)."""

    teacher: TeacherRun

    @property
    def name(self) -> str:
        return f"leak_{self.teacher.name}"


# What one step of a stage works on (None: everything).
Step = TeacherRun | StudentRun | ScoredModel | MeteredLabels | None
# Runs one step: (cfg, paths, the step's TeacherRun / StudentRun / ScoredModel /
# MeteredLabels / None) -> the report or None.
StepFn = Callable[[ExperimentCfg, ExperimentPaths, Any], Awaitable[ExperimentReport | None]]


def teacher_model_name(teacher: TeacherRun) -> str:
    """A fine-tuned teacher's name in evaluations/."""
    return f"teacher_{teacher.name}"


def conditions(cfg: ExperimentCfg) -> dict[str, list[str]]:
    """The report's conditions -> the model names of their runs: base, the control and target
    students, and `teacher_<teacher>` for fine-tuned teachers."""
    out = {BASE: [BASE]}
    for teacher in cfg.teachers:
        out[teacher] = [run.name for run in cfg.student_runs(teacher)]
    for teacher in cfg.teachers:
        if cfg.finetuned_teacher(teacher):
            replicates = cfg.teacher_replicates(teacher)
            out[f"teacher_{teacher}"] = [teacher_model_name(t) for t in replicates]
    return out


def _teacher_runs(cfg: ExperimentCfg) -> list[TeacherRun]:
    return [t for arm in cfg.teachers for t in cfg.teacher_replicates(arm)]


def _student_runs(cfg: ExperimentCfg) -> list[StudentRun]:
    return [run for arm in cfg.teachers for run in cfg.student_runs(arm)]


async def generate_teacher_dataset(
    cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun
) -> None:
    """Sample and filter one teacher replicate's dataset (resumes a partial raw file); a
    fine-tuned teacher is trained first."""
    model = await transfer.teacher_model(cfg, paths, teacher)
    summary = await phases.make_dataset(
        cfg.dataset_cfg(teacher.teacher, model),
        paths.raw(teacher),
        paths.filtered(teacher),
    )
    if summary.filtered_rows == 0:
        raise UserError(
            f"teacher {teacher.name!r} kept 0 of {summary.raw_rows} rows after filtering "
            f"({summary.raw_path}): loosen numbers_filter or raise sample_cfg.max_tokens"
        )


async def finetune_student(cfg: ExperimentCfg, paths: ExperimentPaths, run: StudentRun) -> None:
    """Train one student run on its teacher replicate's kept rows with the run's job
    (`transfer.student_job`: SFT or distillation; `run_finetuning_job` dispatches it)."""
    job = transfer.student_job(cfg, paths, run)
    await phases.finetune(job, paths.filtered(run.source), paths.student(run))


def _scored_models(cfg: ExperimentCfg) -> list[ScoredModel]:
    """Every model to score: the base, every student run and every fine-tuned teacher."""
    names = [BASE, *(run.name for run in _student_runs(cfg))]
    for teacher in cfg.teachers:
        if cfg.finetuned_teacher(teacher):
            names += [teacher_model_name(t) for t in cfg.teacher_replicates(teacher)]
    return [ScoredModel(name) for name in names]


def _model(cfg: ExperimentCfg, paths: ExperimentPaths, name: str) -> Model:
    """The model of a name in evaluations/ (students and teachers as trained)."""
    if name == BASE:
        return cfg.teacher_model
    for run in _student_runs(cfg):
        if run.name == name:
            return read_json_model(paths.student(run), Model, "student model")
    teacher = next(t for t in _teacher_runs(cfg) if teacher_model_name(t) == name)
    return transfer.trained_teacher(cfg, paths, teacher)


async def evaluate_step(
    cfg: ExperimentCfg, paths: ExperimentPaths, item: ScoredModel | MeteredLabels
) -> None:
    """One evaluate-stage step: score a model, or measure a teacher's labels."""
    if isinstance(item, MeteredLabels):
        measure_label_leak(cfg, paths, item.teacher)
    else:
        await evaluate_model(cfg, paths, item)


async def evaluate_model(cfg: ExperimentCfg, paths: ExperimentPaths, scored: ScoredModel) -> None:
    """Every evaluation of one model, in each of `cfg.eval_modes`: sampled answers (scored
    later on every target) and the exact P(target) of every target."""
    model = _model(cfg, paths, scored.name)
    for eval_name, evaluation in cfg.evaluations.items():
        if "sampled" in cfg.eval_modes:
            logger.info(f"evaluating {scored.name} on {eval_name}")
            await phases.evaluate(evaluation, model, paths.evaluation(scored.name, eval_name))
        if "logprob" in cfg.eval_modes:
            logger.info(f"logprob evaluation of {scored.name} on {eval_name}")
            run_logprob_evaluation(
                model, evaluation.questions, cfg.targets, paths.logprob(scored.name, eval_name)
            )


def report(cfg: ExperimentCfg, paths: ExperimentPaths) -> ExperimentReport:
    """Analyse every evaluation in every eval mode (runs as the unit); write
    results.csv/json/png and return the report."""
    runs_of = conditions(cfg)
    panels = []
    for eval_name in cfg.evaluations:
        for metric in cfg.eval_modes:
            if metric == "sampled":
                runs = {
                    c: [read_evaluation_results(paths.evaluation(m, eval_name)) for m in models]
                    for c, models in runs_of.items()
                }
                analysis = analyze_runs(runs, cfg.targets, CONTROL, BASE, match="word")
            else:
                scores = {
                    c: [read_logprob_scores(paths.logprob(m, eval_name)) for m in models]
                    for c, models in runs_of.items()
                }
                analysis = analyze_scores(scores, cfg.targets, CONTROL, BASE)
            panels.append(report_panel(eval_name, metric, analysis))
    datasets = dataset_sizes({t.name: paths.filtered(t) for t in _teacher_runs(cfg)})
    leak = {t.name: read_label_leak(paths.leak(t)) for t in _teacher_runs(cfg)}
    result = ExperimentReport(
        conditions=runs_of,
        datasets=datasets,
        panels=panels,
        leak={name: arm for name, arm in leak.items() if arm is not None},
    )
    write_report(result, paths.root)
    return result


async def _report_step(cfg: ExperimentCfg, paths: ExperimentPaths, _: Step) -> ExperimentReport:
    return report(cfg, paths)


def stage_table(cfg: ExperimentCfg) -> dict[str, tuple[list[Step], StepFn]]:
    """stage -> (its steps, the function that runs one step): the one place that decides
    what each stage does (how a student trains is its job's, see `finetune_student`)."""
    return {
        "generate": ([*_teacher_runs(cfg)], generate_teacher_dataset),
        "finetune": ([*_student_runs(cfg)], finetune_student),
        "evaluate": (
            [*_scored_models(cfg), *(MeteredLabels(t) for t in _teacher_runs(cfg))],
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
    config = cfg.model_dump(mode="json")
    with folder_artifact(paths.root, cfg.model_hash(), config, paths.record.name):
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

    total = sum(len(table[stage][0]) for stage in chosen)
    with tqdm(total=total, desc="experiment", unit="step") as progress:
        for stage in chosen:
            items, run_step = table[stage]
            started = time.perf_counter()
            if workers == 1 or len(items) < 2:
                for item in items:
                    progress.set_postfix_str(f"{stage} {item.name if item else ''}".strip())
                    step_start = time.perf_counter()
                    if (out := await run_step(cfg, paths, item)) is not None:
                        result = out
                    record(timing_key(stage, item), time.perf_counter() - step_start)
                    progress.update()
            else:
                progress.set_postfix_str(f"{stage} ({len(items)} steps, {workers} workers)")
                ordered = sorted(items, key=lambda i: -_work_size(paths, i))
                # A pool per stage: its memory (models, caches) is freed before the next.
                with _pool(workers) as pool:
                    futures = {pool.submit(_worker_step, stage, cfg, paths, i): i for i in ordered}
                    for future in _completed(futures):
                        record(timing_key(stage, futures[future]), future.result())
                        progress.update()
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


@contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes (fresh interpreters) sharing the CPU's threads."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _init_worker, (threads,)) as pool:
        yield pool


def _init_worker(threads: int) -> None:
    import sys

    import torch

    torch.set_num_threads(threads)
    logger.remove()  # a fresh interpreter logs at DEBUG: log as the scripts do
    logger.add(sys.stderr, level=get_settings().log_level)


def _worker_step(stage: str, cfg: ExperimentCfg, paths: ExperimentPaths, item: Step) -> float:
    """Run one step of `stage` in a worker process; returns its seconds."""

    async def step() -> None:
        await stage_table(cfg)[stage][1](cfg, paths, item)

    started = time.perf_counter()
    try:
        asyncio.run(step())
    finally:
        _release_memory()
    return time.perf_counter() - started


def _release_memory() -> None:
    """Free what a finished step left behind before the worker's next step: models sit in
    reference cycles that Python frees only at a full collection, and glibc keeps freed heap
    pages. Without this two workers each grew past 10 GB over a stage of 4-5 students, and
    one was killed for memory on a 24 GB machine."""
    import ctypes
    import gc
    from contextlib import suppress

    gc.collect()
    with suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _completed(futures: dict[Future, Any]) -> Iterator[Future]:
    """The futures as they finish; the first failure cancels the steps not yet started (the
    running ones finish and stay on disk) and is raised."""
    try:
        for future in as_completed(futures):
            future.result()
            yield future
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def timing_key(stage: str, item: Step) -> str:
    """A step's key in timings.json: `<stage>/<teacher, run or model name>`, or the stage."""
    return f"{stage}/{item.name}" if item else stage
