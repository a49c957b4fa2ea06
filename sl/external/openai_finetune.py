"""Supervised fine-tuning through the OpenAI fine-tuning API, created once and resumable
(upload, create, poll: `sl.external.openai_jobs`).
"""

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from sl.errors import RemoteError, UserError
from sl.external.openai_client import Connection, connect
from sl.external.openai_jobs import JobKind, JobRun, job_key
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_file, write_text_atomic


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


FINE_TUNING = JobKind(
    noun="fine-tuning job",
    resource=lambda client: client.fine_tuning.jobs,
    id_field="job_id",
    file_field="file_id",
    job_file=lambda job: job.training_file,
    terminal=frozenset({"succeeded", "failed", "cancelled"}),
    failed=frozenset({"failed", "cancelled"}),
)


async def run_openai_ft_job(
    job: FineTuneSpec, rows: list[tuple[str, str]], output_path: Path
) -> Model:
    """Upload the (prompt, completion) rows, start the job (once), poll it to the end,
    return the tuned model.

    The state next to `output_path` keeps the uploaded file, the job's key and its id (see
    `sl.external.openai_jobs`); a rerun with the same job, data and output resumes that job,
    even one whose create request was cut off, instead of starting (and paying for) another.

    Raises:
        RemoteError: the job failed, or the server stayed unreachable (the state is kept:
            a rerun resumes).
    """
    text = _training_jsonl(rows)
    data_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
    state_path = state_path_for(output_path)
    state = _read_state(state_path, job, data_hash)
    state.update(job_hash=job.job_hash, data_hash=data_hash)
    write_text_atomic(train_file_for(output_path), text)
    state.setdefault("n_rows", len(rows))

    def create(client: Any, file_id: str, metadata: dict[str, str]) -> Any:
        return client.fine_tuning.jobs.create(
            model=job.source_model.id,
            training_file=file_id,
            seed=job.seed,
            method={"type": "supervised", "supervised": {"hyperparameters": job.hyperparameters}},
            metadata=metadata,
        )

    connection = connect()
    try:
        run = JobRun(connection, FINE_TUNING, state_path, state)
        upload = (output_path.stem + "_train.jsonl", text.encode(), "fine-tune")
        job_id = await run.start(upload, job_key(job.job_hash, data_hash), create)
        ft_job = await run.wait(on_poll=_event_logger(connection, job_id))
    finally:
        await connection.close()
    if ft_job.status != "succeeded" or not ft_job.fine_tuned_model:
        error = getattr(ft_job, "error", None)
        message = getattr(error, "message", None) or ft_job.status
        raise RemoteError(
            f"fine-tuning job {ft_job.id} {ft_job.status}: {message}; delete {state_path} "
            f"to start a new job"
        )
    logger.success(f"fine-tuned model {ft_job.fine_tuned_model}")
    return Model(id=ft_job.fine_tuned_model, type="openai", parent_model=job.source_model)


def _event_logger(connection: Connection, job_id: str) -> Callable[[Any], Awaitable[None]]:
    """A poll step that logs the job's new events (training progress)."""
    seen: set[str] = set()

    async def log_events(_: Any) -> None:
        events = await connection.call(
            lambda c: c.fine_tuning.jobs.list_events(job_id, limit=20),
            f"reading the events of fine-tuning job {job_id}",
        )
        for event in reversed(events.data):
            if event.id not in seen:
                seen.add(event.id)
                logger.info(f"job {job_id}: {event.message}")

    return log_events
