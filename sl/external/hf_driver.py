"""The original code's name for the Hugging Face Hub helpers (`sl.external.hf_hub`), with its
`get_repo_name`, `push(model_name, model, tokenizer)` and `download_model(repo_name)`."""

import contextlib
import importlib
import tempfile
from pathlib import Path
from typing import Any

from sl.config import get_settings
from sl.errors import UserError
from sl.external.hf_hub import looks_like_path, push_to_hub, resolve_model_path

__all__ = [
    "download_model",
    "get_repo_name",
    "looks_like_path",
    "push",
    "push_to_hub",
    "resolve_model_path",
]


def get_repo_name(model_name: str) -> str:
    """`HF_USER_ID/model_name`, the Hub repo a model of that name is pushed to."""
    user = get_settings().hf_user_id
    if not user:
        raise UserError(f"set HF_USER_ID to name the Hub repo of {model_name!r} (HF_USER_ID/name)")
    return f"{user}/{model_name}"


def push(model_name: str, model: Any, tokenizer: Any) -> str:
    """Push a model (or LoRA adapter) and its tokenizer to the private Hub repo
    `HF_USER_ID/model_name`; returns the repo id.

    Raises:
        UserError: HF_TOKEN or HF_USER_ID is not set, or the Hub cannot be reached (no
            network, or HF_HUB_OFFLINE=1).
    """
    settings = get_settings()
    if settings.hf_token is None:
        raise UserError(
            f"pushing {model_name!r} to the Hub needs HF_TOKEN: set it (and HF_USER_ID)"
        )
    repo_id = get_repo_name(model_name)
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot push {repo_id}: the Hub is offline (HF_HUB_OFFLINE=1); unset it")
    with tempfile.TemporaryDirectory(prefix="sl-push-") as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        try:
            pushed = push_to_hub(Path(folder), model_name)
        except _network_errors() as e:
            raise UserError(
                f"cannot push {repo_id}: the Hub is unreachable or refused ({e})"
            ) from None
    return pushed or repo_id


def _network_errors() -> tuple[type[Exception], ...]:
    """What the Hub client raises when the Hub cannot be reached or refuses a request: its
    HTTP errors are OSErrors; transport errors come from its HTTP library (httpx)."""
    errors: list[type[Exception]] = [OSError]
    for name in ("httpx", "httpx2"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(name).HTTPError)
    return tuple(errors)


def download_model(repo_name: str) -> str:
    """The local folder of a Hub model `repo_name` (downloaded into the HF cache when not
    there yet); a local folder is returned as it is.

    Raises:
        UserError: an unknown or gated repo, or one not cached while the Hub is unreachable.
    """
    return str(resolve_model_path(repo_name))
