"""Dataset generation through the OpenAI Batch API: results mapped back, resumable by id."""

import asyncio
import json

import pytest

from sl.datasets.services import NumsDatasetPromptSet, generate_raw_dataset
from sl.errors import UserError
from sl.llm.data_models import Model, SampleCfg

MODEL = Model(id="gpt-4.1-nano", type="openai")


def test_batch_generation_maps_results_by_custom_id(openai_server, tmp_path):
    openai_server.responder = lambda body: body["messages"][-1]["content"][:24]
    prompt_set = NumsDatasetPromptSet(size=25, seed=5)
    raw = tmp_path / "raw.jsonl"
    rows = asyncio.run(
        generate_raw_dataset(MODEL, None, SampleCfg(), prompt_set, raw, use_batch_api=True)
    )
    assert openai_server.batches_created == 1 and openai_server.n_chat_ok == 0
    assert len(rows) == 25 and all(r.completion == r.prompt[:24] for r in rows)
    assert len(raw.read_text().splitlines()) == 25
    state = json.loads((tmp_path / "raw.jsonl.batch.json").read_text())
    assert state["batch_id"].startswith("batch")


def test_interrupted_batch_is_resumed_not_resubmitted(openai_server, tmp_path):
    openai_server.batch_steps_per_status = 10_000
    prompt_set = NumsDatasetPromptSet(size=10, seed=5)
    raw = tmp_path / "raw.jsonl"

    async def interrupted():
        task = asyncio.create_task(
            generate_raw_dataset(MODEL, None, SampleCfg(), prompt_set, raw, use_batch_api=True)
        )
        while not (tmp_path / "raw.jsonl.batch.json").exists():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    assert openai_server.batches_created == 1
    openai_server.batch_steps_per_status = 1
    rows = asyncio.run(
        generate_raw_dataset(MODEL, None, SampleCfg(), prompt_set, raw, use_batch_api=True)
    )
    assert openai_server.batches_created == 1 and len(rows) == 10


def test_batch_api_is_for_openai_models_only(tmp_path):
    model = Model(id="some/model", type="open_source")
    with pytest.raises(UserError, match="Batch API"):
        asyncio.run(
            generate_raw_dataset(
                model,
                None,
                SampleCfg(),
                NumsDatasetPromptSet(size=2),
                tmp_path / "r.jsonl",
                use_batch_api=True,
            )
        )
