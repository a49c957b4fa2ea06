"""The models of a token attribution: read from an sl model JSON or an open model id, and
checked before anything is loaded or written (open models, one tokenizer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sl.errors import UserError
from sl.llm.data_models import Model
from sl.llm.engines import engine_of, models_where
from sl.utils.file_utils import read_json_model

WHY_OPEN = (
    "token attribution needs the log-prob of each given token, which it computes with the "
    "weights in this process; a chat API (OpenAI's) does not return log-probs of given tokens"
)


def model_from_arg(value: str, role: str) -> Model:
    """A model JSON written by sl (a path ending in .json) or an open model (a Hub id or a
    local folder, base model or merged fine-tune); `role` names the argument in errors.

    Raises:
        UserError: an empty value, or a model JSON that is missing or invalid (naming the
            file).
    """
    if not value.strip():
        raise UserError(f"{role} is empty: give a model JSON, a Hub id or a model folder",
                        param=role)  # fmt: skip
    if value.endswith(".json"):
        return read_json_model(Path(value), Model)
    return Model(id=value, type="open_source")


def check_open(model: Model, role: str) -> None:
    """Refuse a model whose engine cannot score given tokens (`role`: teacher, base,
    counterfactual; the error is about that argument).

    Raises:
        UserError: an OpenAI (or other API) model, saying why an open model is needed.
    """
    engine = engine_of(model)
    if not engine.can_score_logprobs:
        raise UserError(
            f"{role} {model.id} is an {engine.label} model: {WHY_OPEN}; give "
            f"{models_where(lambda e: e.can_score_logprobs)}",
            param=role,
        )


def base_folder(model: Model, role: str) -> Path:
    """The folder of `model`'s base weights and tokenizer (`resolve_model`).

    Raises:
        UserError: a missing model or adapter, about the argument `role`.
    """
    from sl.external.model_resolution import resolve_model

    try:
        return resolve_model(model).base
    except UserError as e:
        raise UserError(f"{role} {e}", param=role) from None


def check_same_tokenizers(teacher: Model, others: list[tuple[str, Model]]) -> Any:
    """Resolve every model and refuse any of `others` (role, model) whose tokenizer is not the
    teacher's: the log-probs and greedy tokens are compared token id by token id. Returns the
    teacher's tokenizer (the one `load_causal_lm` loads: its base folder's).

    Raises:
        UserError: a model is not found, or a tokenizer differs (about the argument `role`).
    """
    from transformers import AutoTokenizer

    from sl.finetuning.vocabulary import check_same_tokenizer

    teacher_base = base_folder(teacher, "teacher")
    tokenizer = AutoTokenizer.from_pretrained(str(teacher_base))
    for role, model in others:
        folder = base_folder(model, role)
        if folder == teacher_base:
            continue
        try:
            check_same_tokenizer(
                AutoTokenizer.from_pretrained(str(folder)), tokenizer, model.id, teacher.id,
                roles=(role, "the teacher"),
                needs="token attribution compares the models' log-probs of the same token ids: "
                "use models with the teacher's tokenizer (the same base model)",
            )  # fmt: skip
        except UserError as e:
            raise UserError(str(e), param=role) from None
    return tokenizer
