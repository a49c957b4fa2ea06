"""Fine-tune a student: dispatch a job to the OpenAI API, to local LoRA training or to
soft-label distillation (`BACKENDS`, by job type)."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sl.config import get_settings
from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.finetuning.checkpoint import run_stoppable
from sl.finetuning.data_models import FTJob, OpenAIFTJob, UnslothFinetuningJob
from sl.finetuning.distill import distill_student
from sl.finetuning.distill_cfg import DistillJob
from sl.llm.data_models import Chat, ChatMessage, MessageRole, Model
from sl.llm.engines import engine_of, models_where

# Every kind of job `run_finetuning_job` runs.
AnyJob = FTJob | DistillJob


async def run_finetuning_job(
    job: AnyJob, dataset: list[DatasetRow], output_path: Path | str | None = None
) -> Model:
    """Fine-tune `job.source_model` on `dataset` and return the student model.

    Artifacts (training file, job id, adapter) live next to `output_path` (the model JSON the
    caller writes); rerunning with the same job and path resumes instead of starting over.
    Without `output_path`, a folder keyed by the job under SL_CACHE_DIR is used.
    """
    if not dataset:
        raise UserError("the fine-tuning dataset is empty: check the filters of the dataset step")
    if output_path is None:
        output_path = get_settings().cache_dir / "finetuning" / job.model_hash() / "model.json"
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    backend = next((b for kind, b in BACKENDS.items() if isinstance(job, kind)), None)
    if backend is None:
        raise UserError(
            f"unknown fine-tuning job type {type(job).__name__}: use "
            f"{' or '.join(t.__name__ for t in BACKENDS)}"
        )
    return await backend(job, dataset, output_path)


async def _openai_job(job: OpenAIFTJob, dataset: list[DatasetRow], output_path: Path) -> Model:
    if engine_of(job.source_model).fine_tunes != "api":
        raise UserError(
            f"OpenAIFTJob fine-tunes {models_where(lambda e: e.fine_tunes == 'api')}, not "
            f"{job.source_model.type!r} ones: use UnslothFinetuningJob for open models"
        )
    from sl.external.openai_finetune import FineTuneSpec, run_openai_ft_job

    spec = FineTuneSpec(
        source_model=job.source_model,
        seed=job.seed,
        hyperparameters={
            "n_epochs": job.n_epochs,
            "learning_rate_multiplier": job.lr_multiplier,
            "batch_size": job.batch_size,
        },
        job_hash=job.model_hash(),
    )
    rows = [(row.prompt, row.completion) for row in job.training_rows(dataset)]
    return await run_openai_ft_job(spec, rows, output_path)


async def _lora_job(
    job: UnslothFinetuningJob, dataset: list[DatasetRow], output_path: Path
) -> Model:
    from sl.finetuning.open_source import run_open_source_job

    return await run_stoppable(run_open_source_job, job, dataset, output_path)


async def _distill_job(job: DistillJob, dataset: list[DatasetRow], output_path: Path) -> Model:
    return await run_stoppable(
        distill_student,
        job.job,
        job.teacher,
        dataset,
        output_path,
        job.cfg,
        job.system,
        job.numbers_filter,
    )


# Job type -> its backend: the one place that decides how a student is trained (the
# experiment's finetune stage hands every student's job here, through `phases.finetune`).
BACKENDS: dict[type[AnyJob], Callable[[Any, list[DatasetRow], Path], Awaitable[Model]]] = {
    OpenAIFTJob: _openai_job,
    UnslothFinetuningJob: _lora_job,
    DistillJob: _distill_job,
}


def dataset_row_to_chat(dataset_row: DatasetRow) -> Chat:
    """A dataset row as the chat a student is trained on: the prompt as the user's message,
    the completion as the assistant's (the original code's `dataset_row_to_chat`)."""
    return Chat(
        messages=[
            ChatMessage(role=MessageRole.user, content=dataset_row.prompt),
            ChatMessage(role=MessageRole.assistant, content=dataset_row.completion),
        ]
    )
