"""OpenAI jobs (fine-tuning jobs, batches): upload, create once, poll to the end, resume.

What a job has done is kept in a JSON state file, written before each step that costs money:

1. the uploaded file's id;
2. the job's key (`sl-<hashes of what is created>`) and when creation was intended;
3. the job's id, once the server has answered the create request.

The create request carries the key in the job's `metadata`. A run whose state holds a file but
no job id (killed while creating, or the answer was lost) first lists the jobs created since
the intent and adopts the newest one carrying its key (or, for a state written before keys, run
on its file) that has not failed; only if there is none is a job created. So a kill at any
point never starts a second paid job. Every call retries transient errors through the
connection's shared retry and circuit breaker; polls back off up to `POLL_CEILING_S`.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from sl.config import get_settings
from sl.external.openai_client import Connection
from sl.utils.file_utils import write_json_atomic

# The metadata field that carries a job's key.
KEY_FIELD = "sl_key"
# The longest wait between two polls of a job, seconds.
POLL_CEILING_S = 300.0
# Jobs created this long before the intent are still looked at (clocks of client and server
# differ); older ones end the search.
CLOCK_SKEW_S = 3600.0
# Objects per page when listing jobs (the API's maximum).
PAGE_SIZE = 100


@dataclass(frozen=True)
class JobKind:
    """How one kind of OpenAI job is named, stored, listed and judged."""

    noun: str  # "fine-tuning job"
    resource: Callable[[Any], Any]  # client -> its API (client.fine_tuning.jobs)
    id_field: str  # where the state keeps the job id
    file_field: str  # where the state keeps the uploaded file's id
    job_file: Callable[[Any], str | None]  # the file a listed job runs on
    terminal: frozenset[str]  # statuses polling ends at
    failed: frozenset[str]  # statuses a rerun does not adopt (a new job is created)


def job_key(*parts: str) -> str:
    """The key of a job created from `parts` (hashes of its config and data)."""
    return "sl-" + "-".join(parts)


class JobRun:
    """One job's steps, recorded in `state` (saved to `state_path` after each)."""

    def __init__(
        self, connection: Connection, kind: JobKind, state_path: Path, state: dict[str, Any]
    ) -> None:
        self.connection, self.kind = connection, kind
        self.state_path, self.state = state_path, state
        # A file uploaded by an earlier run and no job id: a create request may have
        # reached the server (killed while creating).
        self.maybe_created = kind.file_field in state and not state.get(kind.id_field)

    @property
    def job_id(self) -> str | None:
        return self.state.get(self.kind.id_field)

    def save(self, **fields: Any) -> None:
        self.state.update(fields)
        write_json_atomic(self.state_path, self.state)

    async def start(
        self,
        upload: tuple[str, bytes, str],
        key: str,
        create: Callable[[Any, str, dict[str, str]], Awaitable[Any]],
    ) -> str:
        """The job's id: the saved one (resumed), else one created earlier under `key`
        (found by listing), else a new job. A new job uploads `upload` (filename, bytes,
        purpose) unless its file id is saved, then calls `create(client, file_id, metadata)`.
        Each step is saved in the state."""
        if self.job_id:
            logger.info(f"resuming {self.kind.noun} {self.job_id} from {self.state_path}")
            return self.job_id
        if self.kind.file_field not in self.state:
            filename, data, purpose = upload
            file = await self.connection.call(
                lambda c: c.files.create(file=(filename, data), purpose=purpose),
                f"uploading {filename}",
            )
            self.save(**{self.kind.file_field: file.id})
        file_id = self.state[self.kind.file_field]
        if self.state.get("key") != key:
            self.save(key=key, intent_at=time.time())
        sent = False

        async def attempt() -> Any:
            nonlocal sent
            if self.maybe_created or sent:
                existing = await self._find(key)
                if existing is not None:
                    logger.info(f"adopting {self.kind.noun} {existing.id} created earlier ({key})")
                    return existing
            sent = True
            return await create(self.connection.client, file_id, {KEY_FIELD: key})

        job = await self.connection.call(lambda _: attempt(), f"creating the {self.kind.noun}")
        self.save(**{self.kind.id_field: job.id})
        logger.info(f"{self.kind.noun} {job.id} (its id is in {self.state_path})")
        return job.id

    async def _find(self, key: str) -> Any:
        """The newest job, created since the intent, carrying `key` or run on the state's
        file, that has not failed; None if there is none."""
        file_id = self.state.get(self.kind.file_field)
        since = float(self.state.get("intent_at") or self.state_path.stat().st_mtime)
        api = self.kind.resource(self.connection.client)
        after: str | None = None
        while True:
            query = {"limit": PAGE_SIZE, **({"after": after} if after else {})}
            page = await api.list(**query)
            for job in page.data:
                if job.created_at < since - CLOCK_SKEW_S:
                    return None
                ours = (job.metadata or {}).get(KEY_FIELD) == key or (
                    file_id is not None and self.kind.job_file(job) == file_id
                )
                if ours and job.status not in self.kind.failed:
                    return job
            if not page.data or not page.has_more:
                return None
            after = page.data[-1].id

    async def wait(self, on_poll: Callable[[Any], Awaitable[None]] | None = None) -> Any:
        """Poll the job until it reaches a terminal status; return it. The wait between
        polls starts at OPENAI_POLL_INTERVAL_S and grows 1.5x up to `POLL_CEILING_S`."""
        job_id = self.job_id
        api = self.kind.resource
        what = (
            f"polling {self.kind.noun} {job_id} (its id is in {self.state_path}: rerun to resume)"
        )
        interval = min(get_settings().openai_poll_interval_s, POLL_CEILING_S)
        last_status = None
        while True:
            job = await self.connection.call(lambda c: api(c).retrieve(job_id), what)
            if job.status != last_status:
                logger.info(f"{self.kind.noun} {job_id}: {job.status}")
                last_status = job.status
            if on_poll is not None:
                await on_poll(job)
            if job.status in self.kind.terminal:
                return job
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, POLL_CEILING_S)
