"""Configuration of the MNIST auxiliary-logit experiment (defaults: the paper's settings)."""

from typing import Literal

from pydantic import Field, ValidationError, field_validator

from sl.errors import UserError
from sl.utils.config_model import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_ROWS,
    ConfigModel,
    validation_error_line,
)

N_DIGITS = 10  # digit logits; auxiliary logits come after them
MAX_MODELS = 10_000  # models in one ensemble
MAX_WIDTH = 16_384  # hidden units or auxiliary logits (paper: 256 and 3)


class MnistConfig(ConfigModel):
    """One experiment: N models trained as a batched ensemble, for each m in `n_aux`."""

    n_models: int = Field(
        default=100,
        ge=1,
        le=MAX_MODELS,
        description="Models trained in parallel (paper: 100); CIs over them.",
    )
    n_aux: list[int] = Field(
        default_factory=lambda: [3],
        min_length=1,
        description="Auxiliary logits m; several values -> one run each.",
    )
    hidden: int = Field(
        default=256, ge=1, le=MAX_WIDTH, description="Width of both hidden layers (paper: 256)."
    )
    teacher_epochs: int = Field(
        default=5, ge=0, le=MAX_EPOCHS, description="Teacher epochs on MNIST."
    )
    student_epochs: int = Field(
        default=5, ge=0, le=MAX_EPOCHS, description="Student epochs on noise images."
    )
    lr: float = Field(default=3e-4, gt=0, description="Adam learning rate for all models.")
    batch_size: int = Field(
        default=1024, ge=1, le=MAX_BATCH, description="Batch size (images, all models)."
    )
    train_subset: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ROWS,
        description="Use only the first k training images (None: all 60k).",
    )
    noise_per_epoch: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ROWS,
        description="Noise images per student epoch (None: training-set size).",
    )
    seed: int = Field(default=0, ge=0, description="Seed for inits, data order and noise.")
    device: str = Field(default="auto", description="'auto' (cuda if available), 'cpu', 'cuda'.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Matmul precision; master weights and Adam stay fp32. auto: bfloat16.",
    )

    @field_validator("n_aux")
    @classmethod
    def _check_n_aux(cls, v: list[int]) -> list[int]:
        if any(not 1 <= m <= MAX_WIDTH for m in v):
            raise ValueError(f"every m must be in [1, {MAX_WIDTH}]")
        if len(set(v)) != len(v):
            raise ValueError("values must be distinct")
        return v

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if v != "auto" and v.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError("use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return v


def make_config(**kwargs: object) -> MnistConfig:
    """Build a `MnistConfig`, turning validation errors into one-line `UserError`s.

    Args:
        **kwargs: Field values; None values are dropped so the defaults apply.

    Raises:
        UserError: naming the first invalid field and its value (`n_models=0: ...`).
    """
    given = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return MnistConfig.model_validate(given)
    except ValidationError as e:
        err = e.errors()[0]
        if not err["loc"]:  # e.g. an unknown field: the message names it
            raise UserError(validation_error_line(e)) from None
        field = str(err["loc"][0])
        raise UserError(
            f"{field}={given.get(field)!r}: {err['msg'].removeprefix('Value error, ')}"
        ) from None


def resolve_device(cfg: MnistConfig) -> str:
    """The torch device to use: `cfg.device`, or cuda when available for 'auto'."""
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={cfg.device!r}: CUDA is not available here; use device 'cpu'")
    return cfg.device


def resolve_dtype(cfg: MnistConfig) -> str:
    """The matmul dtype name: bfloat16 for 'auto' (same accuracies, faster: docs/mnist.md)."""
    return "bfloat16" if cfg.dtype == "auto" else cfg.dtype
