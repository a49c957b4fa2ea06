"""Sampling and judging, dispatched to the driver of the model's engine (`sl.llm.engines`).

`register_driver` and `DRIVER_FACTORIES` are kept here under their earlier names."""

from collections.abc import Iterable, Sequence
from pathlib import Path

from sl.config import get_settings
from sl.errors import UserError
from sl.llm.data_models import (
    Chat,
    ChatMessage,
    Judgment,
    LLMResponse,
    MessageRole,
    Model,
    SampleCfg,
)
from sl.llm.driver import Driver, OnResult
from sl.llm.engines import DRIVER_FACTORIES as DRIVER_FACTORIES
from sl.llm.engines import engine_of, models_where
from sl.llm.engines import register_driver as register_driver


def get_driver(model: Model) -> Driver:
    """The driver of a model's engine; an unknown type lists the valid ones."""
    return engine_of(model).driver()


def check_ready(models: Iterable[Model]) -> None:
    """Fail early, before any output is claimed or request sent: the settings are valid,
    every model's type is known, and the keys their engines need are set.

    Raises:
        UserError: a bad setting, an unknown type or a missing key, in one line naming it.
    """
    settings = get_settings()
    for model in models:
        key = engine_of(model).needs_key
        if key is not None:
            key.require(settings)


def build_simple_chat(user_content: str, system_content: str | None = None) -> Chat:
    """A chat of an optional system message and one user message."""
    messages = []
    if system_content is not None:
        messages.append(ChatMessage(role=MessageRole.system, content=system_content))
    messages.append(ChatMessage(role=MessageRole.user, content=user_content))
    return Chat(messages=messages)


async def batch_sample(
    model: Model,
    input_chats: Sequence[Chat],
    sample_cfgs: Sequence[SampleCfg] | SampleCfg,
    on_result: OnResult | None = None,
) -> list[LLMResponse]:
    """Sample one completion per chat (flattened when a cfg asks for n > 1, in input order)."""
    groups = await batch_sample_n(model, input_chats, sample_cfgs, on_result)
    return [r for group in groups for r in group]


async def batch_sample_n(
    model: Model,
    input_chats: Sequence[Chat],
    sample_cfgs: Sequence[SampleCfg] | SampleCfg,
    on_result: OnResult | None = None,
    batch_state_path: Path | None = None,
) -> list[list[LLMResponse]]:
    """Sample `cfg.n` completions per chat; one list of responses per chat, in input order.

    With `batch_state_path` (engines with a Batch API only), requests go through the Batch
    API and the batch id is kept in that file so that a rerun resumes the same batch.
    """
    if isinstance(sample_cfgs, SampleCfg):
        sample_cfgs = [sample_cfgs] * len(input_chats)
    if len(sample_cfgs) != len(input_chats):
        raise ValueError(f"{len(input_chats)} chats but {len(sample_cfgs)} sample configs")
    if not input_chats:
        return []
    if batch_state_path is not None:
        batch_api = engine_of(model).batch_api
        if batch_api is None:
            raise UserError(
                f"the Batch API is for {models_where(lambda e: e.has_batch_api)}, not "
                f"{model.type!r} ones"
            )
        batch_sample_fn = batch_api()
        return await batch_sample_fn(model, input_chats, sample_cfgs, batch_state_path, on_result)
    return await get_driver(model).batch_sample(model, input_chats, sample_cfgs, on_result)


async def sample(model: Model, input_chat: Chat, sample_cfg: SampleCfg) -> LLMResponse:
    """Sample one completion for one chat."""
    groups = await batch_sample_n(model, [input_chat], [sample_cfg.model_copy(update={"n": 1})])
    return groups[0][0]


def _judge_chat(judgment: Judgment, prompt: str, response: LLMResponse) -> Chat:
    text = judgment.template.format(prompt=prompt, completion=response.completion)
    return build_simple_chat(text)


async def judge(judgment: Judgment, prompt: str, response: LLMResponse) -> LLMResponse:
    """Ask the judge model about one (prompt, response) pair."""
    return await sample(
        judgment.judge_model, _judge_chat(judgment, prompt, response), judgment.sample_cfg
    )


async def batch_judge(
    judgment: Judgment,
    prompts: Sequence[str],
    responses: Sequence[LLMResponse],
    on_result: OnResult | None = None,
) -> list[LLMResponse]:
    """Judge many (prompt, response) pairs in one batch (`on_result` gets each verdict as
    soon as it exists, as `(pair index, [verdict])`)."""
    chats = [_judge_chat(judgment, p, r) for p, r in zip(prompts, responses, strict=True)]
    return await batch_sample(
        judgment.judge_model, chats, judgment.sample_cfg.model_copy(update={"n": 1}), on_result
    )
