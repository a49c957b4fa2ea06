"""Every environment setting of sl, typed and validated in one place (`Settings`, and
`VllmSettings` for vLLM's).

Values come from, highest first: a value assigned in code (`from sl import config;
config.OPENAI_API_KEY = "sk-..."`, as a notebook does; `del config.OPENAI_API_KEY` undoes it),
the environment, and `.env` files (python-dotenv, read at import: the first `.env` in the
current directory or above it, then the repo's); on Modal from a `modal.Secret`.
`get_settings()` reads them on each call, so that tests and notebooks can change them; the
scripts call it at start-up, so a bad value is one line naming the variable before any request
is sent or any output claimed. vLLM's settings (`get_vllm_settings()`) are checked only when
vLLM is used, so that a value meant for another machine (`VLLM_N_GPUS=0`) does not stop an
OpenAI-only run. Secret values are never shown in messages. `settings_table()` renders the
README's table of variables from the field descriptions (a test keeps the two equal).
"""

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from dotenv import load_dotenv
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
)

from sl.errors import UserError

ROOT_DIR = Path(__file__).resolve().parent.parent
# Set by Modal inside its containers (not a setting of sl): there the secret is the environment.
IS_MODAL = bool(os.environ.get("MODAL_TASK_ID") or os.environ.get("MODAL_IS_REMOTE"))

DType = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(DType)
LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


def check_dtype(name: str, what: str = "dtype") -> DType:
    """`name` if it is a weights dtype sl knows (`DTYPES`).

    Raises:
        UserError: Another name, in one line naming `what` and the allowed names.
    """
    if name not in DTYPES:
        raise UserError(f"{what} {name!r} is not valid: use one of {', '.join(DTYPES)}")
    return name  # type: ignore[return-value]  # checked against DTYPES just above


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("use an http(s) URL such as http://localhost:8000/v1")
    return value


def _modal_name(value: str) -> str:
    # Modal's rule for app, volume and secret names.
    if not (0 < len(value) < 64) or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError("use up to 63 letters, digits, '-', '_' or '.'")
    return value


def _no_spaces(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value):
        raise ValueError("use a name without spaces")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
ModalName = Annotated[str, AfterValidator(_modal_name)]
GpuName = Annotated[str, AfterValidator(_no_spaces)]
UpperLogLevel = Annotated[
    LogLevel, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)
]


def _setting(default: Any, var: str, description: str, **constraints: Any) -> Any:
    """A field read from the environment variable `var`; `description` goes to the README."""
    return Field(default, validation_alias=var, description=description, **constraints)


class Settings(BaseModel):
    """All environment-driven settings in one place (field → variable: `ENV_VARS`)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid", validate_by_name=True)

    openai_api_key: SecretStr | None = _setting(
        None, "OPENAI_API_KEY", "OpenAI key (`none` for a local server without auth)"
    )
    openai_base_url: HttpUrl | None = _setting(
        None, "OPENAI_BASE_URL", "an OpenAI-compatible server, e.g. `http://localhost:8000/v1`; "
        "unset: api.openai.com",
    )  # fmt: skip
    openai_max_concurrency: int = _setting(
        64, "OPENAI_MAX_CONCURRENCY", "requests in flight at most", ge=1, le=10_000
    )
    openai_start_rps: float = _setting(
        10.0, "OPENAI_START_RPS", "starting request rate (req/s); adapts to rate-limit headers",
        gt=0, le=10_000,
    )  # fmt: skip
    openai_max_retries: int = _setting(
        6, "OPENAI_MAX_RETRIES", "retries of a request after a 5xx, timeout or connection error",
        ge=0, le=100,
    )  # fmt: skip
    openai_timeout_s: float = _setting(
        120.0, "OPENAI_TIMEOUT_S", "seconds one request may take", gt=0, le=3600
    )
    openai_poll_interval_s: float = _setting(
        10.0, "OPENAI_POLL_INTERVAL_S", "first wait (s) between polls of a batch or fine-tuning job",
        gt=0, le=3600,
    )  # fmt: skip
    openai_backoff_base_s: float = _setting(
        1.0, "OPENAI_BACKOFF_BASE_S", "first retry delay (s); doubles per retry, with jitter",
        ge=0, le=600,
    )  # fmt: skip
    hf_token: SecretStr | None = _setting(
        None, "HF_TOKEN", "Hugging Face token: private/gated models, pushing adapters"
    )
    hf_user_id: str | None = _setting(
        None, "HF_USER_ID", "Hub user or org that adapters are pushed to (no token: not pushed)"
    )
    open_source_engine: Literal["auto", "vllm", "transformers"] = _setting(
        "auto", "SL_OPEN_SOURCE_ENGINE",
        "engine of open models: `vllm`, `transformers` or `auto` (vLLM if importable)",
    )  # fmt: skip
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = _setting(
        "auto", "SL_DEVICE",
        "where open models run (generation, LoRA SFT, distillation, exact scoring): `auto` "
        "(the GPU if torch sees one), `cpu`, `cuda`, `cuda:N`",
    )  # fmt: skip
    transformers_batch_size: int = _setting(
        0, "SL_TRANSFORMERS_BATCH_SIZE",
        "sequences per transformers `generate` call (n>1 counts each sample); `0`: as many as "
        "the KV cache fits in half the free GPU memory, or an eighth of the RAM up to 8 GiB "
        "(set it on a GPU for runs that repeat exactly)",
        ge=0, le=1_000_000,
    )  # fmt: skip
    transformers_dtype: DType = _setting(
        "auto", "SL_TRANSFORMERS_DTYPE",
        "weights dtype of transformers generation: `auto` = bfloat16 on a GPU and on CPUs with "
        "native bf16 (AMX / AVX-512 BF16), else float32; `float32`, `bfloat16`, `float16`",
    )  # fmt: skip
    logprob_dtype: DType = _setting(
        "auto", "SL_LOGPROB_DTYPE",
        "weights dtype of exact P(target) scoring: `auto` = float32 on the CPU (bf16 moves these "
        "small probabilities by ~5 %), bfloat16 on a GPU that has it; `float32`, `bfloat16`, "
        "`float16`",
    )  # fmt: skip
    cache_dir: Path = _setting(
        Path.home() / ".cache" / "sl", "SL_CACHE_DIR",
        "cache: the converted embedded SmolLM2, fine-tuning outputs without `--output_path`",
    )  # fmt: skip
    checkpoint_interval_s: int = _setting(
        60, "SL_CHECKPOINT_INTERVAL_S",
        "how often (s) a student's training saves its state, to resume after a crash (`0`: only "
        "when interrupted)",
        ge=0, le=86400,
    )  # fmt: skip
    log_level: UpperLogLevel = _setting(
        "INFO", "SL_LOG_LEVEL",
        "log level of the scripts: `DEBUG` (shows the traceback behind an error), `INFO`, "
        "`WARNING`, ...",
    )  # fmt: skip
    no_dotenv: bool = _setting(
        False, "SL_NO_DOTENV", "`1`: do not read `.env` (only the process environment counts)"
    )
    modal_app: ModalName = _setting("subliminal-learning", "SL_MODAL_APP", "name of the Modal app")
    modal_volume: ModalName = _setting(
        "subliminal-learning-data", "SL_MODAL_VOLUME",
        "name of the Modal volume holding the artifacts",
    )  # fmt: skip
    modal_secret: ModalName = _setting(
        "subliminal-learning-secrets", "SL_MODAL_SECRET",
        "name of the Modal secret with the API keys",
    )  # fmt: skip
    modal_gpu: GpuName = _setting(
        "H100", "SL_MODAL_GPU", "GPU of the open-model Modal functions (`A100-80GB`, `L40S`, ...)"
    )
    modal_mnist_gpu: GpuName = _setting("L4", "SL_MODAL_MNIST_GPU", "GPU of the MNIST experiment")
    modal_gpu_timeout_s: int = _setting(
        6 * 3600, "SL_MODAL_GPU_TIMEOUT_S", "limit (s) of one GPU attempt on Modal", ge=1, le=86400
    )
    modal_cpu_timeout_s: int = _setting(
        24 * 3600, "SL_MODAL_CPU_TIMEOUT_S",
        "limit (s) of one CPU attempt on Modal (OpenAI fine-tunes can queue for hours)",
        ge=1, le=86400,
    )  # fmt: skip
    modal_retries: int = _setting(
        2, "SL_MODAL_RETRIES", "Modal retries after a crash or preemption", ge=0, le=10
    )
    modal_commit_interval_s: int = _setting(
        300, "SL_MODAL_COMMIT_INTERVAL_S",
        "how often (s) a running Modal job commits the volume (`0`: only at the end)",
        ge=0, le=86400,
    )  # fmt: skip


class VllmSettings(BaseModel):
    """vLLM's settings, read and checked only when vLLM is used (`get_vllm_settings`)."""

    model_config = Settings.model_config

    vllm_chunk_size: int = _setting(
        1024, "SL_VLLM_CHUNK_SIZE", "chats per vLLM `LLM.chat` call (results arrive per chunk)",
        ge=1, le=1_000_000,
    )  # fmt: skip
    vllm_n_gpus: int = _setting(
        1, "VLLM_N_GPUS",
        "vLLM tensor-parallel size (this and the other vLLM settings are checked only when vLLM "
        "runs)",
        ge=1, le=1024,
    )  # fmt: skip
    vllm_max_lora_rank: int = _setting(
        8, "VLLM_MAX_LORA_RANK", "largest LoRA `r` vLLM serves (a larger adapter is refused)",
        ge=1, le=4096,
    )  # fmt: skip
    vllm_max_num_seqs: int = _setting(
        512, "VLLM_MAX_NUM_SEQS", "vLLM sequences per scheduler step", ge=1, le=1_000_000
    )
    vllm_max_model_len: int = _setting(
        2048, "VLLM_MAX_MODEL_LEN", "vLLM context length (tokens)", ge=1, le=10_000_000
    )
    vllm_gpu_memory_utilization: float = _setting(
        0.85, "VLLM_GPU_MEMORY_UTILIZATION", "share of GPU memory vLLM may take", gt=0, le=1
    )


# Settings field -> environment variable.
_MODELS: tuple[type[BaseModel], ...] = (Settings, VllmSettings)
ENV_VARS: dict[str, str] = {
    name: str(field.validation_alias)
    for model in _MODELS
    for name, field in model.model_fields.items()
}
_SECRETS = ("OPENAI_API_KEY", "HF_TOKEN")


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _reading_dotenv() -> bool:
    try:
        return not TypeAdapter(bool).validate_python(_env("SL_NO_DOTENV") or False)
    except ValidationError:  # get_settings() reports it at start-up
        return True


def dotenv_files(start: Path | None = None) -> list[Path]:
    """The `.env` files to read, nearest first: the first one in `start` (default: the
    current directory) or a folder above it, then the repo's."""
    try:
        folder = (start or Path.cwd()).resolve()
    except OSError:  # the current directory was deleted
        folder = ROOT_DIR
    nearest = next((f / ".env" for f in (folder, *folder.parents) if (f / ".env").is_file()), None)
    files = [nearest] if nearest else []
    repo = ROOT_DIR / ".env"
    if repo.is_file() and repo not in files:
        files.append(repo)
    return files


def _load_dotenv() -> None:
    """Read `dotenv_files()` into the environment: what is already set, then a nearer file,
    wins."""
    if IS_MODAL or not _reading_dotenv():  # on Modal the secret is the environment
        return
    for path in dotenv_files():
        load_dotenv(path, override=False)


_load_dotenv()


def _problem(error: Any) -> str:
    """What to do about one pydantic error, in a few words."""
    if error["type"] == "literal_error":
        return "use one of " + error["ctx"]["expected"].replace("'", "")
    if error["type"] in ("int_parsing", "int_from_float"):
        return "use an integer"
    if error["type"] == "float_parsing":
        return "use a number"
    if error["type"] == "bool_parsing":
        return "use 1 or 0"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    if error["type"] == "string_pattern_mismatch":
        return "use auto, cpu, cuda or cuda:N"
    return error["msg"][0].lower() + error["msg"][1:]


def _assigned() -> dict[str, Any]:
    """Settings assigned in code as module attributes (`config.OPENAI_API_KEY = ...`)."""
    module = globals()
    return {var: module[var] for var in ENV_VARS.values() if var in module}


_M = TypeVar("_M", bound=BaseModel)


def _read(model: type[_M]) -> _M:
    """`model` from the values assigned in code, else the environment (and `.env`).

    Raises:
        UserError: a bad value, in one line naming its variable (a secret's value hidden).
    """
    variables = [str(f.validation_alias) for f in model.model_fields.values()]
    values: dict[str, Any] = {var: v for var in variables if (v := _env(var)) is not None}
    assigned = {var: v for var, v in _assigned().items() if var in variables}
    for var, value in assigned.items():
        values.pop(var, None)
        if value not in (None, ""):  # None or "": unset
            values[var] = value
    try:
        return model.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        var = str(first["loc"][0]) if first["loc"] else ""
        shown = "<hidden>" if var in _SECRETS else repr(values.get(var))
        where = f"sl.config.{var} (set in code)" if var in assigned else "environment/.env"
        raise UserError(f"{var}={shown} in {where} is not valid: {_problem(first)}") from None


def get_settings() -> Settings:
    """Read the settings now: assigned in code, else the environment (with `.env`, loaded at
    import). vLLM's are not checked here: see `get_vllm_settings`.

    Raises:
        UserError: a variable has a bad value (one line naming it and what to use).
    """
    return _read(Settings)


def get_vllm_settings() -> VllmSettings:
    """Read vLLM's settings now, as `get_settings` does; called where vLLM is used.

    Raises:
        UserError: a variable has a bad value (one line naming it and what to use).
    """
    return _read(VllmSettings)


def require_openai_key(settings: Settings) -> str:
    """Return the OpenAI key or fail with the variable to set."""
    if settings.openai_api_key is None:
        raise UserError(
            "OPENAI_API_KEY is not set: add it to .env or the environment "
            "(for a local OpenAI-compatible server without auth, set OPENAI_API_KEY=none)"
        )
    return settings.openai_api_key.get_secret_value()


def _shown_default(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, Path):
        value = (
            f"~/{value.relative_to(Path.home())}" if value.is_relative_to(Path.home()) else value
        )
    if isinstance(value, int | float):
        value = _number(value)
    return f"`{value}`"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown_range(metadata: list[Any]) -> str:
    bounds = {"ge": "≥", "gt": ">", "le": "≤"}
    shown = [
        f"{sign} {_number(getattr(m, key))}" for m in metadata for key, sign in bounds.items()
        if getattr(m, key, None) is not None
    ]  # fmt: skip
    return " (" + ", ".join(shown) + ")" if shown else ""


def settings_table() -> str:
    """The markdown table of every setting (variable, default, meaning and range), as in the
    README."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    fields = [item for model in _MODELS for item in model.model_fields.items()]
    for name, field in fields:
        meaning = f"{field.description}{_shown_range(field.metadata)}"
        rows.append(f"| `{ENV_VARS[name]}` | {_shown_default(field.default)} | {meaning} |")
    return "\n".join(rows) + "\n"


# The original code's module constants (`from sl import config; config.OPENAI_API_KEY`), read
# when accessed (unset strings are "", numbers take the defaults above); any setting can be
# assigned the same way (`config.VLLM_N_GPUS = 2`), and then wins over the environment.
_ORIGINAL_CONSTANTS = {
    var: field
    for field, var in ENV_VARS.items()
    if var in ("OPENAI_API_KEY", "HF_TOKEN", "HF_USER_ID") or var.startswith("VLLM_")
}


def __getattr__(name: str) -> object:
    if name not in _ORIGINAL_CONSTANTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    field = _ORIGINAL_CONSTANTS[name]
    settings = get_settings() if field in Settings.model_fields else get_vllm_settings()
    value = getattr(settings, field)
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else value
