"""What the in-process open-model drivers (transformers, vLLM) share: chats -> messages,
stop strings, stop reasons, and `InProcessDriver`, their common `batch_sample`."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

from sl.external.model_resolution import ResolvedModel, resolve_model
from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg, StopReason
from sl.llm.driver import OnResult
from sl.utils.threads import await_waking


class _Cancelled(Exception):
    """Raised in a generation thread whose caller was cancelled."""


def to_messages(chat: Chat) -> list[dict[str, str]]:
    """The chat as the list of {role, content} dicts that chat templates expect."""
    return [{"role": m.role.value, "content": m.content} for m in chat.messages]


def truncate_at_stop(text: str, stops: list[str] | None) -> tuple[str, bool]:
    """Cut `text` before the first stop string (like the OpenAI API); say whether one was found."""
    cut = min((i for s in stops or [] if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def stop_reason(hit_eos_or_stop: bool) -> StopReason:
    """STOP_SEQUENCE when generation ended by itself (EOS/stop string), else MAX_TOKENS."""
    return StopReason.STOP_SEQUENCE if hit_eos_or_stop else StopReason.MAX_TOKENS


class InProcessDriver(ABC):
    """A `Driver` whose engine runs in this process (transformers, vLLM): the model is
    resolved first (user errors surface before any loading), then `sample_sync` runs in a
    worker thread so that the event loop stays free."""

    async def batch_sample(
        self,
        model: Model,
        chats: Sequence[Chat],
        sample_cfgs: Sequence[SampleCfg],
        on_result: OnResult | None = None,
    ) -> list[list[LLMResponse]]:
        """Sample `cfg.n` completions per chat in a worker thread; `on_result` is called from
        that thread, per chat, as each batch finishes.

        Cancelled (Ctrl-C, a notebook's interrupt), the thread stops at its next finished
        batch and reports nothing more: what `on_result` wrote stays whole for a resume."""
        resolved = self.resolve(model)
        cancelled = threading.Event()

        def report(i: int, responses: list[LLMResponse]) -> None:
            if cancelled.is_set():
                raise _Cancelled  # ends sample_sync in the thread
            if on_result is not None:
                on_result(i, responses)

        work = asyncio.ensure_future(
            asyncio.to_thread(
                self.sample_sync, model, resolved, list(chats), list(sample_cfgs), report
            )
        )
        try:
            return await await_waking(work)
        finally:
            cancelled.set()
            work.cancel()

    def resolve(self, model: Model) -> ResolvedModel:
        """The model's local folders (`resolve_model`); an engine adds its own checks."""
        return resolve_model(model)

    @abstractmethod
    def sample_sync(
        self,
        model: Model,
        resolved: ResolvedModel,
        chats: list[Chat],
        cfgs: list[SampleCfg],
        on_result: OnResult | None,
    ) -> list[list[LLMResponse]]:
        """`batch_sample`'s work, in the calling thread."""
