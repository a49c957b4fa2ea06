"""What token attribution writes: one `TokenAttribution` per dataset row (tokens.jsonl)."""

from pydantic import BaseModel

from sl.llm.data_models import HashableModel, Model


class ModelContext(HashableModel):
    """A model and the system prompt it sees before each row's prompt (None: none)."""

    model: Model
    system_prompt: str | None = None


class TokenAttribution(BaseModel):
    """One dataset row's completion tokens and, per token, what each model makes of it.

    Lists run over the completion's tokens; `counterfactual_*` hold one such list per
    counterfactual, in the order given. `score` = teacher − base log-prob. `retokenized` is
    false when the token ids do not decode back to the row's completion text.
    """

    row: int
    token_ids: list[int]
    tokens: list[str]
    teacher_logprob: list[float]
    base_logprob: list[float]
    counterfactual_logprob: list[list[float]]
    counterfactual_argmax: list[list[int]]
    divergent: list[bool]
    score: list[float]
    retokenized: bool = True
