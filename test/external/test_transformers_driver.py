"""The transformers driver on a tiny random model: sampling settings, adapters, errors."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from open_engine_checks import CHATS, check_adapter_changes_greedy_output, texts

from sl.errors import UserError
from sl.external.model_resolution import resolve_model
from sl.external.transformers_driver import TransformersDriver
from sl.llm import services
from sl.llm.data_models import LLMResponse, Model, SampleCfg, StopReason

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def driver() -> TransformersDriver:
    return TransformersDriver(batch_size=4, dtype="float32")  # exact: batch == single


async def test_greedy_is_deterministic_and_batch_independent(driver, tiny_model_dir):
    model = Model(id=str(tiny_model_dir), type="open_source")
    cfg = SampleCfg(temperature=0, max_tokens=8)
    batched = await driver.batch_sample(model, CHATS, [cfg] * 5)
    again = await driver.batch_sample(model, CHATS, [cfg] * 5)
    single = await driver.batch_sample(model, CHATS[3:4], [cfg])
    assert texts(batched) == texts(again)
    assert texts(single) == [batched[3][0].completion]
    assert all(g[0].model_id == str(tiny_model_dir) for g in batched)
    assert len(set(texts(batched))) > 1  # prompts matter


async def test_sampling_n_seed_and_max_tokens(driver, tiny_model_dir):
    model = Model(id=str(tiny_model_dir), type="open_source")
    cfg = SampleCfg(temperature=1.0, n=3, max_tokens=6, seed=7)
    seen: dict[int, list[LLMResponse]] = {}
    first = await driver.batch_sample(model, CHATS, [cfg] * 5, on_result=seen.__setitem__)
    second = await driver.batch_sample(model, CHATS, [cfg] * 5)
    assert [len(g) for g in first] == [3] * 5
    assert texts(first) == texts(second)  # same seed, same samples
    assert len(set(texts(first))) > 5  # sampling varies across and within chats
    assert sorted(seen) == list(range(5)) and seen[2] == first[2]
    other = await driver.batch_sample(model, CHATS, [cfg.model_copy(update={"seed": 8})] * 5)
    assert texts(other) != texts(first)
    # a random model rarely emits EOS within 6 tokens: those stop on max_tokens
    assert StopReason.MAX_TOKENS in {r.stop_reason for g in first for r in g}


async def test_seeded_samples_do_not_depend_on_the_batch_split(driver, tiny_model_dir):
    """Each seeded sample has its own random stream: one chat at a time or four per batch,
    and in any request order, a chat gets the same answers; an equal chat asked twice in
    one request gets new ones."""
    model = Model(id=str(tiny_model_dir), type="open_source")
    cfg = SampleCfg(temperature=1.0, n=2, max_tokens=6, seed=3)
    batched = await driver.batch_sample(model, CHATS, [cfg] * 5)
    one_by_one = await TransformersDriver(batch_size=2, dtype="float32").batch_sample(
        model, CHATS, [cfg] * 5
    )
    reordered = await driver.batch_sample(model, CHATS[::-1], [cfg] * 5)
    assert texts(batched) == texts(one_by_one) == texts(reordered[::-1])
    twice = await driver.batch_sample(model, [CHATS[0], CHATS[0]], [cfg] * 2)
    assert texts(twice[:1]) == texts(batched[:1]) and texts(twice[1:]) != texts(twice[:1])


async def test_stop_string_and_logprobs(driver, tiny_model_dir):
    model = Model(id=str(tiny_model_dir), type="open_source")
    greedy = SampleCfg(temperature=0, max_tokens=10)
    (base,) = await driver.batch_sample(model, CHATS[:1], [greedy])
    text = base[0].completion
    stop = text[3:6]
    cfg = SampleCfg(temperature=0, max_tokens=10, stop=[stop], logprobs=True, top_logprobs=3)
    (resp,) = await driver.batch_sample(model, CHATS[:1], [cfg])
    assert resp[0].completion == text[: text.find(stop)]
    assert resp[0].stop_reason == StopReason.STOP_SEQUENCE
    logprobs = resp[0].logprobs
    assert logprobs is not None and 1 <= len(logprobs) <= 10
    # the chosen token plus the top 3 (byte pieces can share the text '\ufffd')
    assert all(1 <= len(step) <= 4 and max(step.values()) <= 0 for step in logprobs)
    assert sum(len(step) >= 3 for step in logprobs) >= len(logprobs) // 2
    first = max(logprobs[0], key=logprobs[0].__getitem__)
    assert resp[0].completion.startswith(first.replace("\ufffd", "")[:1])


async def test_lora_adapter_changes_output(driver, tiny_model_dir, tiny_lora_dir):
    with_lora = await check_adapter_changes_greedy_output(
        driver, tiny_model_dir, tiny_lora_dir, max_tokens=8
    )
    assert with_lora[0][0].model_id == str(tiny_lora_dir)


async def test_adapter_with_other_base_is_refused(driver, tiny_lora_dir, tmp_path):
    other_base = tmp_path / "other-base"
    other_base.mkdir()
    (other_base / "config.json").write_text("{}")  # a model folder, of another model
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_lora_dir, adapter)
    meta = json.loads((adapter / "adapter_config.json").read_text())
    meta["base_model_name_or_path"] = "Qwen/Qwen2.5-7B-Instruct"
    (adapter / "adapter_config.json").write_text(json.dumps(meta))
    lora = Model(
        id=str(adapter),
        type="open_source",
        parent_model=Model(id=str(other_base), type="open_source"),
    )
    with pytest.raises(UserError, match="trained on 'Qwen/Qwen2.5-7B-Instruct'"):
        await driver.batch_sample(lora, CHATS[:1], [SampleCfg(temperature=0, max_tokens=2)])


async def test_missing_folder_and_missing_parent(driver, tiny_lora_dir, tmp_path: Path):
    missing = Model(id=str(tmp_path / "nope"), type="open_source")
    with pytest.raises(UserError, match="nope does not exist"):
        await driver.batch_sample(missing, CHATS[:1], [SampleCfg()])
    orphan = Model(id=str(tiny_lora_dir), type="open_source")
    with pytest.raises(UserError, match="set Model.parent_model"):
        await driver.batch_sample(orphan, CHATS[:1], [SampleCfg()])


def test_adapter_base_matches_by_repo_name(tiny_model_dir, tiny_lora_dir, tmp_path):
    base = tmp_path / "SmolLM2-135M-Instruct"
    shutil.copytree(tiny_model_dir, base)
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_lora_dir, adapter)
    meta = json.loads((adapter / "adapter_config.json").read_text())
    meta["base_model_name_or_path"] = (
        "/root/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/abc"
    )
    (adapter / "adapter_config.json").write_text(json.dumps(meta))
    lora = Model(
        id=str(adapter), type="open_source", parent_model=Model(id=str(base), type="open_source")
    )
    resolved = resolve_model(lora)
    assert (resolved.base, resolved.adapter) == (base, adapter)


async def test_services_dispatch_to_transformers(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SL_OPEN_SOURCE_ENGINE", "transformers")
    model = Model(id=str(tiny_model_dir), type="open_source")
    cfg = SampleCfg(temperature=0, max_tokens=3)
    responses = await services.batch_sample(model, CHATS[:2], cfg)
    assert len(responses) == 2 and all(r.model_id == str(tiny_model_dir) for r in responses)
