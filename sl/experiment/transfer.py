"""The experiment's transfer options as stage steps: fine-tuned trait teachers and soft-label
distillation of students (artifacts: `ExperimentPaths.trait_data`, `.teacher_model`).
"""

from __future__ import annotations

import asyncio

from loguru import logger

from sl import phases
from sl.datasets.services import read_dataset, save_dataset
from sl.experiment.data_models import CONTROL, ExperimentCfg, StudentRun, TeacherRun
from sl.experiment.paths import ExperimentPaths
from sl.experiment.trait_teacher import OTHER_ANIMALS, trait_rows
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_model


async def teacher_model(cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun) -> Model:
    """The model that writes this teacher replicate's numbers; trains its LoRA first if
    needed (trait data and LoRA seeded by the replicate, `TraitTeacherCfg.replicate`)."""
    if not cfg.finetuned_teacher(teacher.teacher):
        return cfg.teacher_model
    data_path, model_path = paths.trait_data(teacher), paths.teacher_model(teacher)
    exclude = [q for e in cfg.evaluations.values() for q in e.questions]
    answers: str | list[str] = (
        [a for a in OTHER_ANIMALS if a not in cfg.targets]
        if teacher.teacher == CONTROL
        else teacher.teacher
    )
    trait_cfg = cfg.trait_teacher.replicate(teacher.replicate)
    if not data_path.exists():
        save_dataset(trait_rows(answers, trait_cfg, exclude), data_path)
    job = trait_cfg.teacher_job(cfg.teacher_model)
    logger.info(f"fine-tuning the {teacher.name} teacher on {data_path}")
    return await phases.finetune(job, data_path, model_path)


def trained_teacher(cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun) -> Model:
    """The teacher model after the generate stage (read back from disk)."""
    if not cfg.finetuned_teacher(teacher.teacher):
        return cfg.teacher_model
    return read_json_model(paths.teacher_model(teacher), Model, "teacher model")


async def distill_run(cfg: ExperimentCfg, paths: ExperimentPaths, run: StudentRun) -> Model:
    """Soft-label distillation of the run's teacher into its student (in a worker thread), on
    the kept rows of the run's teacher replicate."""
    from sl.finetuning.distill import distill_student

    job = cfg.student_job_of(run)
    assert isinstance(job, UnslothFinetuningJob)  # checked by the config
    return await asyncio.to_thread(
        distill_student,
        job,
        trained_teacher(cfg, paths, run.source),
        read_dataset(paths.filtered(run.source)),
        paths.student(run),
        cfg.distill,
        cfg.system_prompt(run.teacher),
    )
