"""Sampling and judging, dispatched by `Model.type` to an engine driver in `sl.external`."""

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from sl.config import get_settings, require_openai_key
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


def _openai_driver() -> Driver:
    from sl.external.openai_driver import get_driver

    return get_driver()


def _open_source_driver() -> Driver:
    engine = get_settings().open_source_engine
    if engine == "auto":
        import importlib.util

        engine = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    if engine == "vllm":
        from sl.external.vllm_driver import get_driver
    elif engine == "transformers":
        from sl.external.transformers_driver import get_driver
    else:
        raise UserError(
            f"SL_OPEN_SOURCE_ENGINE={engine!r} is not valid: use auto, vllm or transformers"
        )
    return get_driver()


DRIVER_FACTORIES: dict[str, Callable[[], Driver]] = {
    "openai": _openai_driver,
    "open_source": _open_source_driver,
}


def register_driver(model_type: str, factory: Callable[[], Driver]) -> Callable[[], Driver] | None:
    """Make `factory` build the driver of the models of `model_type` (e.g. a fake in tests).

    Returns:
        The factory it replaces (None if there was none), to put back with another call.
    """
    previous = DRIVER_FACTORIES.get(model_type)
    DRIVER_FACTORIES[model_type] = factory
    return previous


def get_driver(model: Model) -> Driver:
    """The driver for a model's type; an unknown type lists the valid ones."""
    factory = DRIVER_FACTORIES.get(model.type)
    if factory is None:
        raise UserError(
            f"model type {model.type!r} is not supported: use one of {sorted(DRIVER_FACTORIES)}"
        )
    return factory()


def check_ready(models: Iterable[Model]) -> None:
    """Fail early, before any output is claimed or request sent: the settings are valid and
    the API key is set when one of `models` is an OpenAI model.

    Raises:
        UserError: a bad setting or the missing key, in one line naming the variable.
    """
    settings = get_settings()
    if any(m.type == "openai" for m in models):
        require_openai_key(settings)


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

    With `batch_state_path` (OpenAI models only), requests go through the Batch API and the
    batch id is kept in that file so that a rerun resumes the same batch.
    """
    if isinstance(sample_cfgs, SampleCfg):
        sample_cfgs = [sample_cfgs] * len(input_chats)
    if len(sample_cfgs) != len(input_chats):
        raise ValueError(f"{len(input_chats)} chats but {len(sample_cfgs)} sample configs")
    if not input_chats:
        return []
    if batch_state_path is not None:
        if model.type != "openai":
            raise UserError(f"the Batch API is for OpenAI models, not {model.type!r} ones")
        from sl.external import openai_batch

        return await openai_batch.batch_sample(
            model, input_chats, sample_cfgs, batch_state_path, on_result
        )
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
