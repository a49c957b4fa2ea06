"""A driver-level fake: answers from a function of the chat, without HTTP.

Tests that only need "some model answers" use the `fake_driver` fixture (conftest), which
registers a `FakeDriver` for OpenAI models through `sl.llm.services.register_driver`. Tests of
the HTTP path (retries, pacing, the Batch and fine-tuning APIs) use the loopback server.
"""

from collections.abc import Callable, Sequence

from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg, StopReason
from sl.llm.driver import OnResult, SampleError

Answer = Callable[[Chat], str]


class FakeDriver:
    """Answers every chat with `answer(chat)` and records what it was asked.

    An exception raised by `answer` fails that chat only, reported in a `SampleError` after
    every other result was delivered, as a real driver reports a request that kept failing.
    """

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer: Answer = answer or (lambda chat: "owl")
        self.requests: list[tuple[Model, Chat, SampleCfg]] = []

    @property
    def prompts(self) -> list[str]:
        """The last message of every chat asked for, in order."""
        return [chat.messages[-1].content for _, chat, _ in self.requests]

    async def batch_sample(
        self,
        model: Model,
        chats: Sequence[Chat],
        sample_cfgs: Sequence[SampleCfg],
        on_result: OnResult | None = None,
    ) -> list[list[LLMResponse]]:
        """`cfg.n` answers per chat, in input order (the `Driver` protocol)."""
        results: list[list[LLMResponse]] = []
        failures: dict[int, BaseException] = {}
        for i, (chat, cfg) in enumerate(zip(chats, sample_cfgs, strict=True)):
            self.requests.append((model, chat, cfg))
            try:
                texts = [self.answer(chat) for _ in range(cfg.n)]
            except Exception as e:
                failures[i] = e
                continue
            responses = [
                LLMResponse(model_id=model.id, completion=t, stop_reason=StopReason.STOP_SEQUENCE)
                for t in texts
            ]
            results.append(responses)
            if on_result is not None:
                on_result(i, responses)
        if failures:
            raise SampleError(failures)
        return results
