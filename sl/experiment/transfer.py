"""The experiment's transfer options: fine-tuned trait teachers (a generate-stage step;
artifacts: `ExperimentPaths.trait_data`, `.teacher_model`) and each student's job, SFT or
soft-label distillation (`student_job`, run by the finetune stage).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from loguru import logger

from sl import phases
from sl.datasets.services import read_dataset, save_dataset
from sl.experiment.arms import StudentArm
from sl.experiment.data_models import CONTROL, ExperimentCfg, StudentRun, TeacherRun
from sl.experiment.paths import ExperimentPaths
from sl.experiment.trait_teacher import OTHER_ANIMALS, trait_rows
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.finetuning.distill_cfg import DistillCfg, DistillJob
from sl.finetuning.loss_mask import LossMask
from sl.finetuning.services import AnyJob
from sl.llm.data_models import Model
from sl.utils.artifact import artifact
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
    rows = trait_rows(answers, trait_cfg, exclude)
    key = hashlib.sha256(json.dumps([r.model_dump() for r in rows]).encode()).hexdigest()[:16]

    def same_rows(path: Path) -> bool:  # written before trait data had a meta
        return read_dataset(path) == rows

    with artifact(data_path, key, f"trait data of {teacher.name}", adopt=same_rows) as out:
        if not out.complete:
            save_dataset(rows, data_path)
            out.finish(rows=len(rows))
    job = trait_cfg.teacher_job(cfg.teacher_model)
    logger.info(f"fine-tuning the {teacher.name} teacher on {data_path}")
    return await phases.finetune(job, data_path, model_path)


def arm_job(
    arm: StudentArm, job: UnslothFinetuningJob, distill: DistillCfg, mask: LossMask | None
) -> tuple[UnslothFinetuningJob, DistillCfg]:
    """The student's job and distillation settings as an arm changes them."""
    update: dict = {"loss_mask": mask}
    if arm.lora_rank is not None:
        peft = job.peft_cfg.model_copy(update={"r": arm.lora_rank, "lora_alpha": arm.lora_rank})
        update["peft_cfg"] = peft
    if arm.full_finetune:
        update["full_finetune"] = True
    if arm.lr is not None:
        update["train_cfg"] = job.train_cfg.model_copy(update={"lr": arm.lr})
    tokens = {"both": (True, True), "completion": (False, True), "prompt": (True, False)}
    if arm.distill_tokens is not None:
        prompt, completion = tokens[arm.distill_tokens]
        distill = distill.model_copy(
            update={"prompt_tokens": prompt, "completion_tokens": completion}
        )
    return job.model_copy(update=update), distill


def trained_teacher(cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun) -> Model:
    """The teacher model after the generate stage (read back from disk)."""
    if not cfg.finetuned_teacher(teacher.teacher):
        return cfg.teacher_model
    return read_json_model(paths.teacher_model(teacher), Model, "teacher model")


def student_job(
    cfg: ExperimentCfg, paths: ExperimentPaths, run: StudentRun, mask: LossMask | None = None
) -> AnyJob:
    """The job that trains the run's student on its teacher replicate's kept rows: the run's
    fine-tune (SFT on the tokens), or with student_training='distill' soft-label distillation
    from that teacher (`DistillJob`); an arm's run as the arm changes it (`arm_job`), with
    the defence's loss `mask`."""
    job = cfg.student_job_of(run)
    distill = cfg.distill
    if run.arm is not None:
        assert isinstance(job, UnslothFinetuningJob)  # checked by the config
        job, distill = arm_job(cfg.arm_named(run.arm), job, distill, mask)
    if cfg.student_training == "sft":
        return job
    assert isinstance(job, UnslothFinetuningJob)  # checked by the config
    return DistillJob(
        job=job,
        teacher=trained_teacher(cfg, paths, run.source.main),
        cfg=distill,
        system=cfg.system_prompt(run.teacher),
        numbers_filter=cfg.numbers_filter,
    )
