"""The interface every engine driver implements (one module per engine in `sl.external`)."""

from collections.abc import Callable, Sequence
from typing import Protocol

from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg

# Called with (index into the input list, the responses for that chat) as soon as they exist,
# so that callers can persist results incrementally and resume after a crash.
OnResult = Callable[[int, list[LLMResponse]], None]


class SampleError(RuntimeError):
    """Some requests failed after all retries. Successful ones were delivered via on_result."""

    def __init__(self, failures: dict[int, BaseException]):
        self.failures = failures
        first = next(iter(failures.values()))
        super().__init__(
            f"{len(failures)} request(s) failed after retries (first: {type(first).__name__}: "
            f"{first}); finished results were kept, rerun to retry the rest"
        )


class Driver(Protocol):
    """An engine that samples completions for many chats."""

    async def batch_sample(
        self,
        model: Model,
        chats: Sequence[Chat],
        sample_cfgs: Sequence[SampleCfg],
        on_result: OnResult | None = None,
    ) -> list[list[LLMResponse]]:
        """Sample `sample_cfgs[i].n` completions for each `chats[i]`.

        Returns one list of responses per chat, in input order. Raises `SampleError` if any
        request still failed after retries (after delivering every success to `on_result`).
        """
        ...
