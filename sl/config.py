"""Settings from the environment and an optional `.env` file (python-dotenv).

On Modal the same variables come from a `modal.Secret`; locally from `.env` or the shell.
Settings are read on each call so that tests and notebooks can change the environment.
"""

import os
from pathlib import Path

from dotenv import load_dotenv
from pydantic import BaseModel, Field, SecretStr, ValidationError

from sl.errors import UserError

ROOT_DIR = Path(__file__).resolve().parent.parent
IS_MODAL = bool(os.environ.get("MODAL_TASK_ID") or os.environ.get("MODAL_IS_REMOTE"))

if not IS_MODAL and os.environ.get("SL_NO_DOTENV") != "1":
    load_dotenv(ROOT_DIR / ".env", override=False)


class Settings(BaseModel):
    """All environment-driven settings in one place."""

    openai_api_key: SecretStr | None = Field(default=None, description="OPENAI_API_KEY")
    openai_base_url: str | None = Field(
        default=None, description="OPENAI_BASE_URL (OpenAI-compatible)"
    )
    openai_max_concurrency: int = Field(
        default=64, ge=1, description="OPENAI_MAX_CONCURRENCY: max in flight"
    )
    openai_start_rps: float = Field(
        default=10.0, gt=0, description="OPENAI_START_RPS: initial request rate"
    )
    openai_max_retries: int = Field(
        default=6, ge=0, description="OPENAI_MAX_RETRIES for 5xx/timeouts/connection errors"
    )
    openai_timeout_s: float = Field(default=120.0, gt=0, description="OPENAI_TIMEOUT_S per request")
    openai_poll_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="OPENAI_POLL_INTERVAL_S: first wait between batch/fine-tune polls",
    )
    openai_backoff_base_s: float = Field(
        default=1.0, ge=0, description="OPENAI_BACKOFF_BASE_S first retry delay"
    )
    hf_token: SecretStr | None = Field(default=None, description="HF_TOKEN")
    hf_user_id: str | None = Field(default=None, description="HF_USER_ID (user or org to push to)")
    open_source_engine: str = Field(default="auto", description="SL_OPEN_SOURCE_ENGINE")
    vllm_n_gpus: int = Field(default=1, ge=1)
    vllm_max_lora_rank: int = Field(default=8, ge=1)
    vllm_max_num_seqs: int = Field(default=512, ge=1)
    vllm_max_model_len: int = Field(default=2048, ge=1)
    vllm_gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    cache_dir: Path = Field(default=Path.home() / ".cache" / "sl", description="SL_CACHE_DIR")


# Settings field -> environment variable.
ENV_VARS = {
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_max_concurrency": "OPENAI_MAX_CONCURRENCY",
    "openai_start_rps": "OPENAI_START_RPS",
    "openai_max_retries": "OPENAI_MAX_RETRIES",
    "openai_timeout_s": "OPENAI_TIMEOUT_S",
    "openai_backoff_base_s": "OPENAI_BACKOFF_BASE_S",
    "openai_poll_interval_s": "OPENAI_POLL_INTERVAL_S",
    "hf_token": "HF_TOKEN",
    "hf_user_id": "HF_USER_ID",
    "open_source_engine": "SL_OPEN_SOURCE_ENGINE",
    "vllm_n_gpus": "VLLM_N_GPUS",
    "vllm_max_lora_rank": "VLLM_MAX_LORA_RANK",
    "vllm_max_num_seqs": "VLLM_MAX_NUM_SEQS",
    "vllm_max_model_len": "VLLM_MAX_MODEL_LEN",
    "vllm_gpu_memory_utilization": "VLLM_GPU_MEMORY_UTILIZATION",
    "cache_dir": "SL_CACHE_DIR",
}


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """An integer environment variable (unset or empty: `default`); bad values are a
    UserError naming the variable."""
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an integer: unset it or give a number") from None
    if value < minimum:
        raise UserError(f"{name}={raw!r} is not valid: use an integer >= {minimum}")
    return value


def get_settings() -> Settings:
    """Read settings from the current environment (after `.env` was loaded at import).

    Raises:
        UserError: a variable has a bad value (one line naming it and the allowed range).
    """
    values = {field: v for field, var in ENV_VARS.items() if (v := _env(var)) is not None}
    try:
        return Settings.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        var = ENV_VARS.get(field, field)
        shown = "<hidden>" if var in ("OPENAI_API_KEY", "HF_TOKEN") else repr(values.get(field))
        raise UserError(f"{var}={shown} in environment/.env is not valid: {first['msg']}") from None


def require_openai_key(settings: Settings) -> str:
    """Return the OpenAI key or fail with the variable to set."""
    if settings.openai_api_key is None:
        raise UserError(
            "OPENAI_API_KEY is not set: add it to .env or the environment "
            "(for a local OpenAI-compatible server without auth, set OPENAI_API_KEY=none)"
        )
    return settings.openai_api_key.get_secret_value()


# The original code's module constants (`from sl import config; config.OPENAI_API_KEY`), read
# from the environment when accessed: unset strings are "", numbers take the defaults above.
_ORIGINAL_CONSTANTS = {
    var: field
    for field, var in ENV_VARS.items()
    if var in ("OPENAI_API_KEY", "HF_TOKEN", "HF_USER_ID") or var.startswith("VLLM_")
}


def __getattr__(name: str) -> object:
    if name not in _ORIGINAL_CONSTANTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(get_settings(), _ORIGINAL_CONSTANTS[name])
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else value
