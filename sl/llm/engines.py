"""The engines that run a `Model`, by its `type`: one lazily imported driver each, and what
each engine can do. Code asks the registry (`engine_of(model).runs_locally`) instead of
comparing type strings, so that a new engine is one `register_engine` call.

`Model.type` keeps the original values: "openai" (the OpenAI API) and "open_source" (vLLM or
transformers in this process, by SL_OPEN_SOURCE_ENGINE).
"""

from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from sl.config import Settings, get_settings, require_openai_key
from sl.errors import UserError
from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg
from sl.llm.driver import Driver, OnResult

DriverFactory = Callable[[], Driver]
# `batch_sample(model, chats, cfgs, state_path, on_result)` of a Batch API: the state file
# keeps the batch id so that a rerun resumes the same batch.
BatchSample = Callable[
    [Model, Sequence[Chat], Sequence[SampleCfg], Path, OnResult | None],
    Awaitable[list[list[LLMResponse]]],
]


@dataclass(frozen=True)
class Key:
    """A secret an engine needs: its environment variable, and the check that fails in one
    line naming that variable when it is not set."""

    variable: str
    require: Callable[[Settings], str]


@dataclass(frozen=True)
class Engine:
    """One engine: the `Model.type` it serves, its driver and its capabilities.

    Attributes:
        name: The `Model.type` value.
        label: What messages call its models ("OpenAI models").
        driver: Builds (imports on first use) the driver that samples.
        runs_locally: The weights are in this process (the GPU image on Modal; one such
            model in memory at a time).
        needs_key: The secret it needs before any request, or None.
        batch_api: Imports the Batch API's `batch_sample`, or None without one.
        can_score_logprobs: It gives exact log-probabilities of chosen answers.
        fine_tunes: How its models are fine-tuned: "api" (the provider's fine-tuning API),
            "lora" (local LoRA SFT), or None.
    """

    name: str
    label: str
    driver: DriverFactory
    runs_locally: bool = False
    needs_key: Key | None = None
    batch_api: Callable[[], BatchSample] | None = None
    can_score_logprobs: bool = False
    fine_tunes: Literal["api", "lora"] | None = None

    @property
    def has_batch_api(self) -> bool:
        """Whether requests can go through a Batch API (`batch_api`)."""
        return self.batch_api is not None


def _openai_driver() -> Driver:
    from sl.external.openai_driver import get_driver

    return get_driver()


def _openai_batch() -> BatchSample:
    from sl.external.openai_batch import batch_sample

    return batch_sample


def _open_source_driver() -> Driver:
    engine = get_settings().open_source_engine  # validated by Settings
    if engine == "auto":
        import importlib.util

        engine = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    if engine == "vllm":
        from sl.external.vllm_driver import get_driver
    else:
        from sl.external.transformers_driver import get_driver
    return get_driver()


# Model.type -> its engine.
ENGINES: dict[str, Engine] = {
    "openai": Engine(
        name="openai",
        label="OpenAI",
        driver=_openai_driver,
        needs_key=Key("OPENAI_API_KEY", require_openai_key),
        batch_api=_openai_batch,
        fine_tunes="api",
    ),
    "open_source": Engine(
        name="open_source",
        label="open",
        driver=_open_source_driver,
        runs_locally=True,
        can_score_logprobs=True,
        fine_tunes="lora",
    ),
}


def engine_of(model: Model | str) -> Engine:
    """The engine of a model (or of a `Model.type` value).

    Raises:
        UserError: An unknown type, in one line listing the valid ones.
    """
    name = model if isinstance(model, str) else model.type
    engine = ENGINES.get(name)
    if engine is None:
        raise UserError(f"model type {name!r} is not supported: use one of {sorted(ENGINES)}")
    return engine


def models_where(capable: Callable[[Engine], object]) -> str:
    """The models whose engine is `capable`, for messages: "OpenAI models (type 'openai')"."""
    found = [e for e in ENGINES.values() if capable(e)]
    if not found:
        return "no models"
    labels = " or ".join(e.label for e in found)
    return f"{labels} models (type {' or '.join(repr(e.name) for e in found)})"


def register_engine(engine: Engine) -> Engine | None:
    """Serve the models of type `engine.name` with `engine`.

    Returns:
        The engine it replaces (None if there was none), to put back with another call.
    """
    previous = ENGINES.get(engine.name)
    ENGINES[engine.name] = engine
    return previous


def register_driver(model_type: str, factory: DriverFactory) -> DriverFactory | None:
    """Make `factory` build the driver of the models of `model_type` (e.g. a fake in tests),
    keeping the engine's capabilities; a new type gets an engine that can do nothing else.

    Returns:
        The factory it replaces (None if there was none), to put back with another call.
    """
    engine = ENGINES.get(model_type)
    if engine is None:
        register_engine(Engine(name=model_type, label=model_type, driver=factory))
        return None
    register_engine(replace(engine, driver=factory))
    return engine.driver


class _DriverFactories(MutableMapping[str, DriverFactory]):
    """The engines' driver factories by model type, as a dict (the earlier API): setting an
    item is `register_driver`, deleting one removes the engine."""

    def __getitem__(self, model_type: str) -> DriverFactory:
        return ENGINES[model_type].driver

    def __setitem__(self, model_type: str, factory: DriverFactory) -> None:
        register_driver(model_type, factory)

    def __delitem__(self, model_type: str) -> None:
        del ENGINES[model_type]

    def __iter__(self) -> Iterator[str]:
        return iter(ENGINES)

    def __len__(self) -> int:
        return len(ENGINES)


DRIVER_FACTORIES: MutableMapping[str, DriverFactory] = _DriverFactories()
