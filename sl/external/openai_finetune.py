"""Supervised fine-tuning through the OpenAI fine-tuning API, resumable by saved job id."""

import asyncio
import json
from pathlib import Path
from typing import Any

from loguru import logger

from sl.config import get_settings
from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.external.openai_client import make_async_client
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model
from sl.utils.file_utils import write_json_atomic, write_text_atomic

TERMINAL = {"succeeded", "failed", "cancelled"}


def state_path_for(output_path: Path) -> Path:
    """Where the job id is kept: next to the output model JSON."""
    return output_path.with_name(output_path.name + ".job.json")


def _training_jsonl(rows: list[DatasetRow]) -> str:
    lines = (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": r.prompt},
                    {"role": "assistant", "content": r.completion},
                ]
            }
        )
        for r in rows
    )
    return "".join(line + "\n" for line in lines)


def _hyperparameters(job: OpenAIFTJob) -> dict[str, Any]:
    return {
        "n_epochs": job.n_epochs,
        "learning_rate_multiplier": job.lr_multiplier,
        "batch_size": job.batch_size,
    }


async def run_openai_ft_job(
    job: OpenAIFTJob, dataset: list[DatasetRow], output_path: Path
) -> Model:
    """Upload the data, start the job (once), poll it to the end, return the tuned model.

    The job id is saved next to `output_path` right after the job is created; a rerun with
    the same job and output resumes polling that job instead of starting (and paying for)
    a new one.
    """
    state_path = state_path_for(output_path)
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state and state.get("job_hash") != job.model_hash():
        raise UserError(
            f"{state_path} belongs to a different fine-tuning job: choose another "
            f"--output_path or delete {state_path}"
        )
    state["job_hash"] = job.model_hash()
    client = make_async_client()
    try:
        if "job_id" not in state:
            await _start(client, job, dataset, output_path, state, state_path)
        else:
            logger.info(f"resuming fine-tuning job {state['job_id']} from {state_path}")
        ft_job = await _poll(client, state["job_id"])
    finally:
        await client.close()
    if ft_job.status != "succeeded" or not ft_job.fine_tuned_model:
        error = getattr(ft_job, "error", None)
        message = getattr(error, "message", None) or ft_job.status
        raise RuntimeError(
            f"fine-tuning job {ft_job.id} {ft_job.status}: {message}; delete {state_path} "
            f"to start a new job"
        )
    logger.success(f"fine-tuned model {ft_job.fine_tuned_model}")
    return Model(id=ft_job.fine_tuned_model, type="openai", parent_model=job.source_model)


async def _start(
    client: Any,
    job: OpenAIFTJob,
    dataset: list[DatasetRow],
    output_path: Path,
    state: dict[str, Any],
    state_path: Path,
) -> None:
    if "file_id" not in state:
        rows = job.training_rows(dataset)
        train_path = output_path.with_name(output_path.stem + "_train.jsonl")
        text = _training_jsonl(rows)
        write_text_atomic(train_path, text)
        file = await client.files.create(file=(train_path.name, text.encode()), purpose="fine-tune")
        state.update(file_id=file.id, n_rows=len(rows))
        write_json_atomic(state_path, state)
        logger.info(f"uploaded {len(rows)} training rows as {file.id}")
    ft_job = await client.fine_tuning.jobs.create(
        model=job.source_model.id,
        training_file=state["file_id"],
        seed=job.seed,
        method={"type": "supervised", "supervised": {"hyperparameters": _hyperparameters(job)}},
    )
    state["job_id"] = ft_job.id
    write_json_atomic(state_path, state)
    logger.info(f"created fine-tuning job {ft_job.id} (id saved in {state_path})")


async def _poll(client: Any, job_id: str) -> Any:
    interval = get_settings().openai_poll_interval_s
    last_status, seen_events = None, set()
    while True:
        ft_job = await client.fine_tuning.jobs.retrieve(job_id)
        if ft_job.status != last_status:
            logger.info(f"job {job_id}: {ft_job.status}")
            last_status = ft_job.status
        events = await client.fine_tuning.jobs.list_events(job_id, limit=20)
        for event in reversed(events.data):
            if event.id not in seen_events:
                seen_events.add(event.id)
                logger.info(f"job {job_id}: {event.message}")
        if ft_job.status in TERMINAL:
            return ft_job
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 300.0)
