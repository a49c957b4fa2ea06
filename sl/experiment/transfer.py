"""The experiment's transfer options as stage steps: fine-tuned trait teachers, soft-label
distillation of students, and the exact next-token-probability evaluation.

Artifacts (beside the runner's):
    teachers/<teacher>/trait.jsonl          the trait data of a fine-tuned teacher
    teachers/<teacher>/model.json           the teacher (adapter in model_adapter/)
    evaluations/<model>/<evaluation>.logprob.json   per-question P(target)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loguru import logger

from sl import phases
from sl.datasets.services import read_dataset, save_dataset
from sl.evaluation.logprob import LogprobResult, compare_paired, run_logprob_evaluation
from sl.experiment.data_models import CONTROL, ExperimentCfg
from sl.experiment.report import ResultRow
from sl.experiment.trait_teacher import OTHER_ANIMALS, trait_rows
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_model
from sl.utils.run_meta import read_meta


def teacher_paths(root: Path, teacher: str) -> tuple[Path, Path]:
    """(trait data, teacher model JSON) of a fine-tuned teacher."""
    folder = root / "teachers" / teacher
    return folder / "trait.jsonl", folder / "model.json"


def logprob_path(root: Path, model_name: str, evaluation: str) -> Path:
    return root / "evaluations" / model_name / f"{evaluation}.logprob.json"


def needs_teacher_finetune(cfg: ExperimentCfg, teacher: str) -> bool:
    """Whether this teacher is a LoRA fine-tune (the 'base' control is the plain base)."""
    if cfg.teacher_mode != "finetune":
        return False
    return teacher != CONTROL or cfg.trait_teacher.control == "other_animals"


async def teacher_model(cfg: ExperimentCfg, root: Path, teacher: str) -> Model:
    """The model that writes this teacher's numbers; trains its LoRA first if needed."""
    if not needs_teacher_finetune(cfg, teacher):
        return cfg.teacher_model
    data_path, model_path = teacher_paths(root, teacher)
    exclude = [q for e in cfg.evaluations.values() for q in e.questions]
    answers: str | list[str] = (
        [a for a in OTHER_ANIMALS if a not in cfg.targets] if teacher == CONTROL else teacher
    )
    if not data_path.exists():
        save_dataset(trait_rows(answers, cfg.trait_teacher, exclude), data_path)
    job = cfg.trait_teacher.teacher_job(cfg.teacher_model)
    logger.info(f"fine-tuning the {teacher} teacher on {data_path}")
    return await phases.finetune(job, data_path, model_path, "--output_dir")


def trained_teacher(cfg: ExperimentCfg, root: Path, teacher: str) -> Model:
    """The teacher model after the generate stage (read back from disk)."""
    if not needs_teacher_finetune(cfg, teacher):
        return cfg.teacher_model
    return read_json_model(teacher_paths(root, teacher)[1], Model, "teacher model")


async def distill(cfg: ExperimentCfg, root: Path, teacher: str, dataset: Path, out: Path) -> Model:
    """Soft-label distillation of this teacher into a student (in a worker thread)."""
    from sl.finetuning.distill import distill_student

    assert isinstance(cfg.student_job, UnslothFinetuningJob)  # checked by the config
    model = trained_teacher(cfg, root, teacher)
    return await asyncio.to_thread(
        distill_student,
        cfg.student_job,
        model,
        read_dataset(dataset),
        out,
        cfg.distill,
        cfg.system_prompt(teacher),
    )


def evaluate_logprob(cfg: ExperimentCfg, root: Path, models: dict[str, Model]) -> None:
    """P(target) per question for every model (fine-tuned teachers included) and evaluation."""
    models = dict(models)
    for teacher in cfg.teachers:
        if needs_teacher_finetune(cfg, teacher):
            models[f"teacher_{teacher}"] = trained_teacher(cfg, root, teacher)
    for name, model in models.items():
        for eval_name, evaluation in cfg.evaluations.items():
            logger.info(f"logprob evaluation of {name} on {eval_name}")
            run_logprob_evaluation(
                model, evaluation.questions, cfg.targets, logprob_path(root, name, eval_name)
            )


def _read(root: Path, name: str, eval_name: str) -> dict[str, LogprobResult]:
    from sl.utils.file_utils import read_json_file

    data = read_json_file(logprob_path(root, name, eval_name), "logprob scores")
    return {k: LogprobResult.model_validate(v) for k, v in data.items()}


def logprob_rows(cfg: ExperimentCfg, root: Path, dataset_paths: dict[str, Path]) -> list[ResultRow]:
    """One results row per evaluation and target, from the saved logprob scores."""
    import numpy as np

    from sl.utils.stats import mean_ci

    sizes = {
        t: ((read_meta(p) or {}).get("raw_rows", 0), (read_meta(p) or {}).get("rows", 0))
        for t, p in dataset_paths.items()
    }
    rows = []
    for eval_name in cfg.evaluations:
        base, control = _read(root, "base", eval_name), _read(root, CONTROL, eval_name)
        for target in cfg.targets:
            student = _read(root, target, eval_name)[target]
            b = mean_ci(np.array(base[target].probabilities))
            c = compare_paired(
                np.array(student.probabilities), np.array(control[target].probabilities)
            )
            rows.append(
                ResultRow(
                    evaluation=eval_name,
                    target=target,
                    metric="logprob",
                    base=b.mean,
                    base_ci=(b.lower, b.upper),
                    control=c.control.mean,
                    control_ci=(c.control.lower, c.control.upper),
                    student=c.student.mean,
                    student_ci=(c.student.lower, c.student.upper),
                    difference=c.difference.mean,
                    difference_ci=(c.difference.lower, c.difference.upper),
                    p_value=c.p_value,
                    test=c.test,
                    raw_rows=sizes[target][0],
                    filtered_rows=sizes[target][1],
                    control_raw_rows=sizes[CONTROL][0],
                    control_filtered_rows=sizes[CONTROL][1],
                )
            )
    return rows
