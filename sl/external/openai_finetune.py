"""Supervised fine-tuning through the OpenAI fine-tuning API, resumable by saved job id.

Every call retries transient errors (connection, timeout, 429, 5xx) with backoff; polling
goes on after a blip. Creating the job is guarded against paying twice: after an ambiguous
failure (the request may have reached the server), the existing jobs are searched for one on
the same training file before a new one is created.
"""

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from sl.config import get_settings
from sl.errors import RemoteError, UserError
from sl.external.openai_client import make_async_client, with_retries
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_file, write_json_atomic, write_text_atomic

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass(frozen=True)
class FineTuneSpec:
    """A fine-tuning job in the API's terms (`sl.finetuning.services` builds it from an
    `OpenAIFTJob`)."""

    source_model: Model
    seed: int
    hyperparameters: dict[str, Any]  # n_epochs, learning_rate_multiplier, batch_size
    job_hash: str  # the job's config: a saved job of another config is refused


def state_path_for(output_path: Path) -> Path:
    """Where the job id is kept: next to the output model JSON."""
    return output_path.with_name(output_path.name + ".job.json")


def sidecar_dir(output_path: Path) -> Path:
    """A hidden folder beside the output for sl's generated side files (no user file of a
    plain name can collide with them)."""
    return output_path.parent / ".sl"


def train_file_for(output_path: Path) -> Path:
    """The training JSONL uploaded for `output_path` (kept for inspection)."""
    return sidecar_dir(output_path) / f"{output_path.name}.train.jsonl"


def _training_jsonl(rows: list[tuple[str, str]]) -> str:
    lines = (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": completion},
                ]
            }
        )
        for prompt, completion in rows
    )
    return "".join(line + "\n" for line in lines)


def _read_state(state_path: Path, job: FineTuneSpec, data_hash: str) -> dict[str, Any]:
    if not state_path.exists():
        return {}
    state = read_json_file(state_path, "fine-tuning state")
    if not isinstance(state, dict):
        raise UserError(f"fine-tuning state {state_path} is corrupt: delete it to start over")
    if state.get("job_hash") != job.job_hash:
        raise UserError(
            f"{state_path} belongs to a different fine-tuning job: choose another "
            f"output path or delete {state_path}",
            path=state_path,
        )
    if state.get("data_hash", data_hash) != data_hash:
        raise UserError(
            f"{state_path} belongs to a fine-tune on a different dataset: choose another "
            f"output path or delete {state_path}",
            path=state_path,
        )
    return state


async def run_openai_ft_job(
    job: FineTuneSpec, rows: list[tuple[str, str]], output_path: Path
) -> Model:
    """Upload the (prompt, completion) rows, start the job (once), poll it to the end,
    return the tuned model.

    The job id is saved next to `output_path` right after the job is created; a rerun with
    the same job, data and output resumes polling that job instead of starting (and paying
    for) a new one.

    Raises:
        RemoteError: the job failed, or the server stayed unreachable (the job id is kept:
            a rerun resumes polling).
    """
    text = _training_jsonl(rows)
    data_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
    state_path = state_path_for(output_path)
    state = _read_state(state_path, job, data_hash)
    state.update(job_hash=job.job_hash, data_hash=data_hash)
    client = make_async_client()
    try:
        if "job_id" not in state:
            await _start(client, job, text, len(rows), output_path, state, state_path)
        else:
            logger.info(f"resuming fine-tuning job {state['job_id']} from {state_path}")
        ft_job = await _poll(client, state["job_id"], state_path)
    finally:
        await client.close()
    if ft_job.status != "succeeded" or not ft_job.fine_tuned_model:
        error = getattr(ft_job, "error", None)
        message = getattr(error, "message", None) or ft_job.status
        raise RemoteError(
            f"fine-tuning job {ft_job.id} {ft_job.status}: {message}; delete {state_path} "
            f"to start a new job"
        )
    logger.success(f"fine-tuned model {ft_job.fine_tuned_model}")
    return Model(id=ft_job.fine_tuned_model, type="openai", parent_model=job.source_model)


async def _start(
    client: Any,
    job: FineTuneSpec,
    text: str,
    n_rows: int,
    output_path: Path,
    state: dict[str, Any],
    state_path: Path,
) -> None:
    if "file_id" not in state:
        train_path = train_file_for(output_path)
        write_text_atomic(train_path, text)
        file = await with_retries(
            lambda: client.files.create(
                file=(output_path.stem + "_train.jsonl", text.encode()), purpose="fine-tune"
            ),
            "uploading the training file",
        )
        state.update(file_id=file.id, n_rows=n_rows)
        write_json_atomic(state_path, state)
        logger.info(f"uploaded {n_rows} training rows as {file.id}")
    attempted = False

    async def create() -> Any:
        nonlocal attempted
        if attempted:  # an earlier attempt may have created the job: never pay twice
            existing = await _find_job(client, job, state["file_id"])
            if existing is not None:
                logger.info(f"found job {existing.id} created by the interrupted request")
                return existing
        attempted = True
        return await client.fine_tuning.jobs.create(
            model=job.source_model.id,
            training_file=state["file_id"],
            seed=job.seed,
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": job.hyperparameters},
            },
        )

    ft_job = await with_retries(create, "creating the fine-tuning job")
    state["job_id"] = ft_job.id
    write_json_atomic(state_path, state)
    logger.info(f"created fine-tuning job {ft_job.id} (id saved in {state_path})")


async def _find_job(client: Any, job: FineTuneSpec, file_id: str) -> Any:
    page = await client.fine_tuning.jobs.list(limit=100)
    for candidate in page.data:
        if candidate.training_file == file_id and candidate.model == job.source_model.id:
            return candidate
    return None


async def _poll(client: Any, job_id: str, state_path: Path) -> Any:
    interval = get_settings().openai_poll_interval_s
    last_status, seen_events = None, set()
    what = f"polling fine-tuning job {job_id} (its id is in {state_path}: rerun to resume)"
    while True:
        ft_job = await with_retries(lambda: client.fine_tuning.jobs.retrieve(job_id), what)
        if ft_job.status != last_status:
            logger.info(f"job {job_id}: {ft_job.status}")
            last_status = ft_job.status
        events = await with_retries(
            lambda: client.fine_tuning.jobs.list_events(job_id, limit=20), what
        )
        for event in reversed(events.data):
            if event.id not in seen_events:
                seen_events.add(event.id)
                logger.info(f"job {job_id}: {event.message}")
        if ft_job.status in TERMINAL:
            return ft_job
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 300.0)
