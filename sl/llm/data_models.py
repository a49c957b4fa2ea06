"""Data models shared by every engine: models, chats, sampling settings, responses."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from sl.utils.config_model import MAX_SAMPLES, MAX_TOKENS, ConfigModel
from sl.utils.fingerprint import json_hash

ModelType = Literal["openai", "open_source"]


class HashableModel(ConfigModel):
    """A config with a stable content hash, used as a run key (unknown fields are refused;
    fields can be assigned, validated on assignment: see `ConfigModel`). Configs are mutable,
    so they are not hashable by `hash()`: key dicts and sets by `model_hash()`."""

    def model_hash(self) -> str:
        """Hex digest of the JSON dump of the current values; equal configs give equal
        hashes across processes, and an edited config a new hash."""
        return json_hash(self.model_dump(mode="json"))


# Completion tokens the open engines (vLLM, transformers) allow when SampleCfg.max_tokens is None
# (the OpenAI API then applies its own limit).
DEFAULT_MAX_TOKENS = 512


class Model(HashableModel):
    """A model to sample from or fine-tune.

    `id` is an OpenAI model id, a Hugging Face repo id, or a local folder. For a LoRA adapter,
    `parent_model` is its base model.
    """

    id: str = Field(description="OpenAI model id, Hugging Face repo id or local folder")
    type: ModelType = Field(
        description="'openai' (the OpenAI API) or 'open_source' (vLLM / transformers)"
    )
    parent_model: Model | None = Field(
        default=None, description="The base model of a LoRA adapter or fine-tune (else None)"
    )

    @field_validator("id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "the model id is empty: give an OpenAI model id, a Hub repo id or a local folder"
            )
        return value


class SampleCfg(HashableModel):
    """Sampling settings. Unset (None) fields are not sent to the engine; with
    `max_tokens=None` the open engines (vLLM, transformers) stop after 512 tokens
    (`DEFAULT_MAX_TOKENS`) and the OpenAI API applies its own limit."""

    temperature: float = Field(
        default=1.0, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy"
    )
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        le=MAX_TOKENS,
        description=f"Max completion tokens (None: {DEFAULT_MAX_TOKENS} on open engines, the "
        "API's limit on OpenAI)",
    )
    top_p: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Nucleus sampling mass (None: engine default)"
    )
    min_p: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        exclude_if=lambda v: v is None,  # unset: left out of the dump, so hashes stay as before
        description="Min-p sampling: drop tokens below min_p x the top token's probability "
        "(None: off). Open engines only (the OpenAI API has none). With top_p too, "
        "transformers applies top-p then min-p, vLLM min-p then top-p",
    )
    seed: int | None = Field(
        default=None, description="Sampling seed, where the engine supports one (None: random)"
    )
    n: int = Field(default=1, ge=1, le=MAX_SAMPLES, description="Completions per prompt")
    logprobs: bool = Field(default=False, description="Return the sampled tokens' logprobs")
    top_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="Also the top-k alternatives per token (0..20)"
    )
    stop: list[str] | None = Field(
        default=None, description="Strings that end the completion (not included in it)"
    )


class MessageRole(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"


class ChatMessage(HashableModel):
    role: MessageRole
    content: str


class Chat(HashableModel):
    messages: list[ChatMessage]


class StopReason(StrEnum):
    """Why a completion ended (the original code's values)."""

    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    CONTENT_FILTER = "content_filter"
    API_ERROR = "api_error"
    PROMPT_BLOCKED = "prompt_blocked"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> StopReason:
        """A stop reason from our values or an engine's finish reason ("length", "stop",
        "end_turn", "eos"); anything else is UNKNOWN."""
        if isinstance(value, cls):
            return value
        text = str(value) if value is not None else ""
        if text in _FINISH_REASONS:
            return _FINISH_REASONS[text]
        return cls(text) if text in cls._value2member_map_ else cls.UNKNOWN


_FINISH_REASONS = {
    "length": StopReason.MAX_TOKENS,
    "stop": StopReason.STOP_SEQUENCE,
    "end_turn": StopReason.STOP_SEQUENCE,
    "eos": StopReason.STOP_SEQUENCE,
}


class LLMResponse(BaseModel):
    """One completion. `logprobs` is a list (one per token) of {token: logprob} maps.

    `model_id` is the model that was asked for (`Model.id`); `served_model_id` is the name the
    server reported, e.g. the dated "gpt-4.1-nano-2025-04-14" for "gpt-4.1-nano".
    """

    model_id: str
    completion: str
    stop_reason: StopReason = StopReason.UNKNOWN
    logprobs: list[dict[str, float]] | None = None
    served_model_id: str | None = None

    @field_validator("stop_reason", mode="before")
    @classmethod
    def _parse_stop_reason(cls, value: object) -> StopReason:
        return StopReason.parse(value)


class Judgment(HashableModel):
    """An LLM judge: a model, its sampling settings and a template with {prompt}/{completion}."""

    judge_model: Model = Field(description="The model that judges")
    sample_cfg: SampleCfg = Field(description="The judge's sampling settings")
    template: str = Field(
        description="The judge's prompt, with {prompt} (the question) and {completion} (the answer)"
    )
