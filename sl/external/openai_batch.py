"""Sampling through the OpenAI Batch API: half price, results within 24 h, resumable.

The batch id is saved to a state file as soon as the batch exists; a rerun with the same
requests resumes polling that batch instead of paying for a new one. Every call retries
transient errors (connection, timeout, 429, 5xx) with backoff, so polling goes on after a
blip; a batch creation that may have reached the server is looked up before it is retried.
"""

import asyncio
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from sl.config import get_settings
from sl.errors import RemoteError, UserError
from sl.external.openai_client import make_async_client, with_retries
from sl.external.openai_driver import get_driver
from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg
from sl.llm.driver import OnResult, SampleError
from sl.utils.file_utils import read_json_file, write_json_atomic

TERMINAL = {"completed", "failed", "expired", "cancelled"}


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
    client = make_async_client()
    try:
        batch_id = await _existing_or_new_batch(client, state_path, payload, request_hash)
        batch = await _poll(client, batch_id, state_path)
        if batch.status != "completed" or not batch.output_file_id:
            raise RemoteError(
                f"batch {batch_id} ended {batch.status}: {batch.errors}; delete {state_path} "
                f"and rerun to submit a new batch"
            )
        output_id = batch.output_file_id
        content = await with_retries(
            lambda: client.files.content(output_id), f"downloading the results of {batch_id}"
        )
        output = content.text
    finally:
        await client.close()
    results, failures = _map_results(driver, model, output, len(chats))
    for i, responses in enumerate(results):
        if responses is not None and on_result is not None:
            on_result(i, responses)
    driver.usage.log(f"{model.id} (Batch API, half price)", discount=0.5)
    if failures:
        raise SampleError(failures)
    return [r for r in results if r is not None]


async def _existing_or_new_batch(
    client: Any, state_path: Path, payload: bytes, request_hash: str
) -> str:
    if state_path.exists():
        state = read_json_file(state_path, "batch state")
        if not isinstance(state, dict) or not isinstance(state.get("batch_id", ""), str):
            raise UserError(f"batch state {state_path} is corrupt: delete it to start over")
        if state.get("request_hash") == request_hash and state.get("batch_id"):
            logger.info(f"resuming batch {state['batch_id']} from {state_path}")
            return state["batch_id"]
        logger.warning(f"{state_path} is for other requests (finished earlier): new batch")
    file = await with_retries(
        lambda: client.files.create(file=("batch_input.jsonl", payload), purpose="batch"),
        "uploading the batch input",
    )
    attempted = False

    async def create() -> Any:
        nonlocal attempted
        if attempted:  # an earlier attempt may have created the batch: never pay twice
            page = await client.batches.list(limit=100)
            for candidate in page.data:
                if candidate.input_file_id == file.id:
                    return candidate
        attempted = True
        return await client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )

    batch = await with_retries(create, "creating the batch")
    write_json_atomic(
        state_path, {"batch_id": batch.id, "input_file_id": file.id, "request_hash": request_hash}
    )
    logger.info(f"created batch {batch.id} (state in {state_path})")
    return batch.id


async def _poll(client: Any, batch_id: str, state_path: Path) -> Any:
    interval = get_settings().openai_poll_interval_s
    what = f"polling batch {batch_id} (its id is in {state_path}: rerun to resume)"
    while True:
        batch = await with_retries(lambda: client.batches.retrieve(batch_id), what)
        counts = batch.request_counts
        done = f"{counts.completed}/{counts.total}" if counts else "?"
        logger.info(f"batch {batch_id}: {batch.status} ({done} requests done)")
        if batch.status in TERMINAL:
            return batch
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 300.0)


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
