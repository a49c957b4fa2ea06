"""What both open-model engines (transformers, vLLM) must do, checked the same way on each.

Imports only `sl.llm`, so it loads in `.venv-vllm` as in the core venv.
"""

from __future__ import annotations

from pathlib import Path

from sl.llm.data_models import LLMResponse, Model, SampleCfg
from sl.llm.driver import Driver
from sl.llm.services import build_simple_chat

CHATS = [build_simple_chat(f"List {i} numbers, like 1, 2, 3") for i in range(5)]


def texts(groups: list[list[LLMResponse]]) -> list[str]:
    """Every completion, chat by chat."""
    return [r.completion for group in groups for r in group]


async def check_adapter_changes_greedy_output(
    driver: Driver, base_dir: Path, lora_dir: Path, max_tokens: int
) -> list[list[LLMResponse]]:
    """Greedy answers to `CHATS` with the adapter differ from the base model's, and the base's
    are the same after the adapter was loaded as before.

    Returns:
        The adapter's answers, for the engine's own checks.
    """
    base = Model(id=str(base_dir), type="open_source")
    lora = Model(id=str(lora_dir), type="open_source", parent_model=base)
    cfgs = [SampleCfg(temperature=0, max_tokens=max_tokens)] * len(CHATS)
    before = await driver.batch_sample(base, CHATS, cfgs)
    with_lora = await driver.batch_sample(lora, CHATS, cfgs)
    after = await driver.batch_sample(base, CHATS, cfgs)
    assert texts(with_lora) != texts(before), "the adapter changed no answer"
    assert texts(after) == texts(before), "the base model changed once an adapter was loaded"
    return with_lora
