"""The steps of an experiment's stages: what each step works on (`Step`) and the function
that runs it (a teacher's dataset, a student's training, a model's evaluation, a leak meter),
and the names of the runs in the report (`conditions`). `runner.stage_table` puts them in
order."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from sl import phases
from sl.errors import UserError
from sl.evaluation.logprob import run_logprob_evaluation
from sl.experiment import transfer
from sl.experiment.data_models import BASE, ExperimentCfg, StudentRun, TeacherRun
from sl.experiment.label_leak import measure_label_leak
from sl.experiment.paths import ExperimentPaths
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_model


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
# MeteredLabels / None) -> the report (an `ExperimentReport`) or None.
StepFn = Callable[[ExperimentCfg, ExperimentPaths, Any], Awaitable[Any]]


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


def teacher_runs(cfg: ExperimentCfg) -> list[TeacherRun]:
    return [t for arm in cfg.teachers for t in cfg.teacher_replicates(arm)]


def student_runs(cfg: ExperimentCfg) -> list[StudentRun]:
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


def scored_models(cfg: ExperimentCfg) -> list[ScoredModel]:
    """Every model to score: the base, every student run and every fine-tuned teacher."""
    names = [BASE, *(run.name for run in student_runs(cfg))]
    for teacher in cfg.teachers:
        if cfg.finetuned_teacher(teacher):
            names += [teacher_model_name(t) for t in cfg.teacher_replicates(teacher)]
    return [ScoredModel(name) for name in names]


def model_named(cfg: ExperimentCfg, paths: ExperimentPaths, name: str) -> Model:
    """The model of a name in evaluations/ (students and teachers as trained)."""
    if name == BASE:
        return cfg.teacher_model
    for run in student_runs(cfg):
        if run.name == name:
            return read_json_model(paths.student(run), Model, "student model")
    teacher = next(t for t in teacher_runs(cfg) if teacher_model_name(t) == name)
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
    model = model_named(cfg, paths, scored.name)
    for eval_name, evaluation in cfg.evaluations.items():
        if "sampled" in cfg.eval_modes:
            logger.info(f"evaluating {scored.name} on {eval_name}")
            await phases.evaluate(evaluation, model, paths.evaluation(scored.name, eval_name))
        if "logprob" in cfg.eval_modes:
            logger.info(f"logprob evaluation of {scored.name} on {eval_name}")
            run_logprob_evaluation(
                model, evaluation.questions, cfg.targets, paths.logprob(scored.name, eval_name)
            )
