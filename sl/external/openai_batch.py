"""Sampling through the OpenAI Batch API: half price, results within 24 h, resumable.

The batch is created once and polled to the end by `sl.external.openai_jobs`: its input
file, key and id are saved in a state file, so a rerun with the same requests resumes that
batch (or adopts the one a killed run was creating) instead of paying for a new one.
"""

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from sl.errors import RemoteError, UserError
from sl.external.openai_client import connect
from sl.external.openai_driver import get_driver
from sl.external.openai_jobs import JobKind, JobRun, job_key
from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg
from sl.llm.driver import OnResult, SampleError
from sl.utils.file_utils import read_json_file

BATCH = JobKind(
    noun="batch",
    resource=lambda client: client.batches,
    id_field="batch_id",
    file_field="input_file_id",
    job_file=lambda batch: batch.input_file_id,
    terminal=frozenset({"completed", "failed", "expired", "cancelled"}),
    failed=frozenset({"failed", "expired", "cancelled", "cancelling"}),
)


async def batch_sample(
    model: Model,
    chats: Sequence[Chat],
    sample_cfgs: Sequence[SampleCfg],
    state_path: Path,
    on_result: OnResult | None = None,
) -> list[list[LLMResponse]]:
    """Run all requests as one batch; deliver results like `Driver.batch_sample`."""
    driver = get_driver()
    lines = [
        json.dumps(
            {
                "custom_id": str(i),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": driver.request_params(model, chat, cfg),
            }
        )
        for i, (chat, cfg) in enumerate(zip(chats, sample_cfgs, strict=True))
    ]
    payload = ("\n".join(lines) + "\n").encode()
    request_hash = hashlib.sha256(payload).hexdigest()[:16]
    connection = connect()
    try:
        run = JobRun(connection, BATCH, state_path, _read_state(state_path, request_hash))
        upload = ("batch_input.jsonl", payload, "batch")
        await run.start(upload, job_key(request_hash), _create_batch)
        batch = await run.wait(on_poll=_log_counts)
        if batch.status != "completed" or not batch.output_file_id:
            raise RemoteError(
                f"batch {batch.id} ended {batch.status}: {batch.errors}; delete {state_path} "
                f"and rerun to submit a new batch"
            )
        output_id = batch.output_file_id
        content = await connection.call(
            lambda c: c.files.content(output_id), f"downloading the results of {batch.id}"
        )
        output = content.text
    finally:
        await connection.close()
    results, failures = _map_results(driver, model, output, len(chats))
    for i, responses in enumerate(results):
        if responses is not None and on_result is not None:
            on_result(i, responses)
    driver.usage.log(f"{model.id} (Batch API, half price)", discount=0.5)
    if failures:
        raise SampleError(failures)
    return [r for r in results if r is not None]


def _read_state(state_path: Path, request_hash: str) -> dict[str, Any]:
    """The saved state of the batch of these requests; empty for a new batch."""
    if not state_path.exists():
        return {"request_hash": request_hash}
    state = read_json_file(state_path, "batch state")
    if not isinstance(state, dict) or not isinstance(state.get("batch_id", ""), str):
        raise UserError(f"batch state {state_path} is corrupt: delete it to start over")
    if state.get("request_hash") != request_hash:
        logger.warning(f"{state_path} is for other requests (finished earlier): new batch")
        return {"request_hash": request_hash}
    return state


def _create_batch(client: Any, file_id: str, metadata: dict[str, str]) -> Any:
    return client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata,
    )


async def _log_counts(batch: Any) -> None:
    counts = batch.request_counts
    if counts:
        logger.info(f"batch {batch.id}: {counts.completed}/{counts.total} requests done")


def _map_results(
    driver: Any, model: Model, output: str, n: int
) -> tuple[list[list[LLMResponse] | None], dict[int, BaseException]]:
    from openai.types.chat import ChatCompletion

    results: list[list[LLMResponse] | None] = [None] * n
    for line in output.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        i = int(item["custom_id"])
        response = item.get("response") or {}
        if item.get("error") or response.get("status_code") != 200:
            continue
        results[i] = driver._convert(model, ChatCompletion.model_validate(response["body"]))
    failures: dict[int, BaseException] = {
        i: RuntimeError("no successful result in the batch output")
        for i, r in enumerate(results)
        if r is None
    }
    return results, failures
