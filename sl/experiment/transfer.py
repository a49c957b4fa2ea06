"""The experiment's transfer options as stage steps: fine-tuned trait teachers, soft-label
distillation of students, and the exact next-token-probability evaluation.

Artifacts (beside the runner's; <name> is the teacher replicate's name, `TeacherRun.name`):
    teachers/<name>/trait.jsonl             the trait data of a fine-tuned teacher
    teachers/<name>/model.json              the teacher (adapter in model_adapter/)
    evaluations/<model>/<evaluation>.logprob.json   per-question P(target) of every target
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loguru import logger

from sl import phases
from sl.datasets.services import read_dataset, save_dataset
from sl.evaluation.logprob import LogprobResult
from sl.experiment.data_models import CONTROL, ExperimentCfg, StudentRun, TeacherRun
from sl.experiment.trait_teacher import OTHER_ANIMALS, trait_rows
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_file, read_json_model


def teacher_paths(root: Path, name: str) -> tuple[Path, Path]:
    """(trait data, teacher model JSON) of a fine-tuned teacher replicate."""
    folder = root / "teachers" / name
    return folder / "trait.jsonl", folder / "model.json"


def logprob_path(root: Path, model_name: str, evaluation: str) -> Path:
    return root / "evaluations" / model_name / f"{evaluation}.logprob.json"


async def teacher_model(cfg: ExperimentCfg, root: Path, teacher: TeacherRun) -> Model:
    """The model that writes this teacher replicate's numbers; trains its LoRA first if
    needed (trait data and LoRA seeded by the replicate, `TraitTeacherCfg.replicate`)."""
    if not cfg.finetuned_teacher(teacher.teacher):
        return cfg.teacher_model
    data_path, model_path = teacher_paths(root, teacher.name)
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


def trained_teacher(cfg: ExperimentCfg, root: Path, teacher: TeacherRun) -> Model:
    """The teacher model after the generate stage (read back from disk)."""
    if not cfg.finetuned_teacher(teacher.teacher):
        return cfg.teacher_model
    return read_json_model(teacher_paths(root, teacher.name)[1], Model, "teacher model")


async def distill_run(
    cfg: ExperimentCfg, root: Path, run: StudentRun, dataset: Path, out: Path
) -> Model:
    """Soft-label distillation of the run's teacher into its student (in a worker thread)."""
    from sl.finetuning.distill import distill_student

    job = cfg.student_job_of(run)
    assert isinstance(job, UnslothFinetuningJob)  # checked by the config
    return await asyncio.to_thread(
        distill_student,
        job,
        trained_teacher(cfg, root, run.source),
        read_dataset(dataset),
        out,
        cfg.distill,
        cfg.system_prompt(run.teacher),
    )


def read_logprob(root: Path, model_name: str, evaluation: str) -> dict[str, list[float]]:
    """target -> per-question P(target) of one model, from its saved logprob evaluation."""
    data = read_json_file(logprob_path(root, model_name, evaluation), "logprob scores")
    return {t: LogprobResult.model_validate(v).probabilities for t, v in data.items()}
