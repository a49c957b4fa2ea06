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
    """One model the evaluate stage scores, by its name in evaluations/, in `modes`."""

    name: str
    modes: tuple[str, ...]


@dataclass(frozen=True)
class MeteredLabels:
    """The labels a teacher replicate's students learn from, measured by the leak meter
    (an evaluate-stage step)."""

    teacher: TeacherRun

    @property
    def name(self) -> str:
        return f"leak_{self.teacher.name}"


@dataclass(frozen=True)
class AttributedTeacher:
    """A target teacher replicate whose rows get their token attribution and the defence
    arms' masks or replaced rows (an arms-stage step)."""

    teacher: TeacherRun

    @property
    def name(self) -> str:
        return f"attribution_{self.teacher.name}"


@dataclass(frozen=True)
class ProbedTeacher:
    """A trait teacher whose entangled numbers are probed against the base (an
    evaluate-stage step)."""

    teacher: TeacherRun

    @property
    def name(self) -> str:
        return f"entanglement_{self.teacher.name}"


# What one step of a stage works on (None: everything).
Step = (
    TeacherRun | StudentRun | ScoredModel | MeteredLabels | AttributedTeacher | ProbedTeacher | None
)
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
    """The main arm's student runs, then every student arm's (`ExperimentCfg.arms`)."""
    return [*(run for arm in cfg.teachers for run in cfg.student_runs(arm)), *cfg.all_arm_runs()]


def arms_steps(cfg: ExperimentCfg) -> list[TeacherRun | AttributedTeacher]:
    """The arms stage: the teachers that write an arm's own rows, and the token attribution
    of every target teacher replicate when a defence needs it."""
    attributed = [
        AttributedTeacher(t)
        for t in teacher_runs(cfg)
        if any(arm.attributed and t.teacher in cfg.arm_teachers(arm) for arm in cfg.arms)
    ]
    return [*cfg.arm_teacher_runs(), *attributed]


async def arms_step(
    cfg: ExperimentCfg, paths: ExperimentPaths, item: TeacherRun | AttributedTeacher
) -> None:
    """One arms-stage step: an arm teacher's rows, or a teacher's attribution and masks."""
    from sl.experiment.defences import attribute_teacher

    if isinstance(item, AttributedTeacher):
        attribute_teacher(cfg, paths, item.teacher)
    else:
        await generate_teacher_dataset(cfg, paths, item)


async def generate_teacher_dataset(
    cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun
) -> None:
    """Sample and filter one teacher replicate's dataset (resumes a partial raw file); a
    fine-tuned teacher is trained first. An arm's teacher (`TeacherRun.arm`) is the main
    one, trained by then, sampling as the arm says."""
    if teacher.arm is None:
        model, sample_cfg = await transfer.teacher_model(cfg, paths, teacher), None
    else:
        model = transfer.trained_teacher(cfg, paths, teacher.main)
        sample_cfg = cfg.arm_named(teacher.arm).teacher_sample_cfg
    summary = await phases.make_dataset(
        cfg.dataset_cfg(teacher.teacher, model, sample_cfg),
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
    (`transfer.student_job`: SFT or distillation; `run_finetuning_job` dispatches it); an
    arm's run on the arm's rows and mask (`defences.arm_data`)."""
    from sl.experiment.defences import arm_data

    rows, mask = paths.filtered(run.source), None
    if run.arm is not None:
        rows, mask = arm_data(cfg, paths, cfg.arm_named(run.arm), run.source)
    job = transfer.student_job(cfg, paths, run, mask)
    await phases.finetune(job, rows, paths.student(run))


def scored_models(cfg: ExperimentCfg) -> list[ScoredModel]:
    """Every model to score: the base, every student run and every fine-tuned teacher."""
    names = [BASE, *(run.name for arm in cfg.teachers for run in cfg.student_runs(arm))]
    for teacher in cfg.teachers:
        if cfg.finetuned_teacher(teacher):
            names += [teacher_model_name(t) for t in cfg.teacher_replicates(teacher)]
    arm_modes = tuple(cfg.arm_eval_modes or cfg.eval_modes)
    return [
        *(ScoredModel(name, tuple(cfg.eval_modes)) for name in names),
        *(ScoredModel(run.name, arm_modes) for run in cfg.all_arm_runs()),
    ]


def model_named(cfg: ExperimentCfg, paths: ExperimentPaths, name: str) -> Model:
    """The model of a name in evaluations/ (students and teachers as trained)."""
    if name == BASE:
        return cfg.teacher_model
    for run in student_runs(cfg):
        if run.name == name:
            return read_json_model(paths.student(run), Model, "student model")
    teacher = next(t for t in teacher_runs(cfg) if teacher_model_name(t) == name)
    return transfer.trained_teacher(cfg, paths, teacher)


def probed_teachers(cfg: ExperimentCfg) -> list[ProbedTeacher]:
    """The trait teachers the entanglement probe runs on (replicate 0 of each target)."""
    if not cfg.entanglement_probe:
        return []
    return [ProbedTeacher(cfg.teacher_replicates(t)[0]) for t in cfg.targets]


async def evaluate_step(
    cfg: ExperimentCfg, paths: ExperimentPaths, item: ScoredModel | MeteredLabels | ProbedTeacher
) -> None:
    """One evaluate-stage step: score a model, measure a teacher's labels, or probe a
    teacher's entangled numbers."""
    if isinstance(item, MeteredLabels):
        measure_label_leak(cfg, paths, item.teacher)
    elif isinstance(item, ProbedTeacher):
        probe_teacher(cfg, paths, item.teacher)
    else:
        await evaluate_model(cfg, paths, item)


def probe_teacher(cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun) -> None:
    """The entanglement probe of a trait teacher against the base, on the first
    evaluation's questions."""
    from sl.evaluation.entanglement import EntanglementCfg, probe_entanglement

    questions = next(iter(cfg.evaluations.values())).questions
    probe = EntanglementCfg(
        model=transfer.trained_teacher(cfg, paths, teacher),
        system_prompt=cfg.system_prompt(teacher.teacher),
        base=cfg.teacher_model,
        target=teacher.teacher,
        questions=questions,
    )
    probe_entanglement(probe, paths.entanglement(teacher))


async def evaluate_model(cfg: ExperimentCfg, paths: ExperimentPaths, scored: ScoredModel) -> None:
    """Every evaluation of one model, in each of its modes (`cfg.eval_modes`; an arm's run:
    `cfg.arm_eval_modes`): sampled answers (scored later on every target) and the exact
    P(target) of every target."""
    model = model_named(cfg, paths, scored.name)
    for eval_name, evaluation in cfg.evaluations.items():
        if "sampled" in scored.modes:
            logger.info(f"evaluating {scored.name} on {eval_name}")
            await phases.evaluate(evaluation, model, paths.evaluation(scored.name, eval_name))
        if "logprob" in scored.modes:
            logger.info(f"logprob evaluation of {scored.name} on {eval_name}")
            run_logprob_evaluation(
                model, evaluation.questions, cfg.targets, paths.logprob(scored.name, eval_name)
            )
