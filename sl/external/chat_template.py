"""Helpers shared by the open-model drivers: chats → messages, stop strings, LoRA adapters,
and `InProcessDriver`, their common `batch_sample`."""

from __future__ import annotations

import asyncio
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sl.errors import UserError
from sl.external.embedded_model import EMBEDDED_MODEL_ID
from sl.external.hf_driver import resolve_model_path
from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg, StopReason
from sl.llm.driver import OnResult


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


@dataclass(frozen=True)
class ResolvedModel:
    """Local folders for a model: the base weights and, for a LoRA model, the adapter."""

    base: Path
    adapter: Path | None = None


def _canonical_name(ref: str) -> str:
    """A comparable name for a model reference: a repo id, a cache snapshot or a folder."""
    ref = ref.rstrip("/")
    if m := re.search(r"models--([^/]+)--([^/]+)", ref):  # a Hugging Face cache snapshot
        ref = f"{m.group(1)}/{m.group(2)}"
    if "SmolLM2-135M-Instruct-Q4_1-hf" in ref:  # the embedded offline copy
        ref = EMBEDDED_MODEL_ID
    name = ref.split("/")[-1].lower()
    return re.sub(r"(-unsloth)?(-bnb-4bit)?$", "", name)


def _same_base(recorded: str, parent: Model, parent_path: Path) -> bool:
    recorded_path = Path(recorded).expanduser()
    if recorded_path.is_dir() and recorded_path.resolve() == parent_path.resolve():
        return True
    return _canonical_name(recorded) in {
        _canonical_name(parent.id),
        _canonical_name(str(parent_path)),
    }


def resolve_model(model: Model) -> ResolvedModel:
    """Find local folders for a model; for an adapter, check it was trained on `parent_model`.

    Raises:
        UserError: A missing folder, a folder that is not an adapter, or a base mismatch.
    """
    if model.parent_model is None:
        path = resolve_model_path(model.id)
        if (path / "adapter_config.json").is_file():
            raise UserError(
                f"{model.id} is a LoRA adapter: set Model.parent_model to its base model"
            )
        return ResolvedModel(base=path)
    if model.parent_model.parent_model is not None:
        raise UserError(f"{model.id}: adapters of adapters are not supported; merge one first")
    adapter = resolve_model_path(model.id)
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise UserError(
            f"{model.id} has no adapter_config.json: with parent_model set, id must be a "
            "LoRA adapter folder (or drop parent_model for a full model)"
        )
    base = resolve_model_path(model.parent_model.id)
    recorded = json.loads(config_path.read_text()).get("base_model_name_or_path") or ""
    if recorded and not _same_base(recorded, model.parent_model, base):
        raise UserError(
            f"adapter {model.id} was trained on {recorded!r}, not on parent_model "
            f"{model.parent_model.id!r}: set parent_model to the adapter's base model"
        )
    return ResolvedModel(base=base, adapter=adapter)


def lora_rank(adapter: Path) -> int:
    """The LoRA rank `r` recorded in an adapter folder (0 when unknown)."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    return int(config.get("r") or 0)


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
        that thread, per chat, as each batch finishes."""
        resolved = self.resolve(model)
        return await asyncio.to_thread(
            self.sample_sync, model, resolved, list(chats), list(sample_cfgs), on_result
        )

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
