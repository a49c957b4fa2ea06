"""Fine-tuning jobs. Field names match the original code so existing config modules work:
`source_model_id=` + `source_model_type=` build `source_model`, and `UnslothFinetuningJob.PeftCfg`
/ `.TrainCfg` are the LoRA and training settings classes."""

from typing import Any, ClassVar, Literal, TypeAlias

from pydantic import Field, ValidationInfo, field_validator, model_validator

from sl.datasets.data_models import DatasetRow
from sl.finetuning.loss_mask import LossMask
from sl.finetuning.subsample import select_rows
from sl.llm.data_models import HashableModel, Model, ModelType
from sl.utils.config_model import MAX_BATCH, MAX_EPOCHS, MAX_ROWS, MAX_TOKENS


class FTJob(HashableModel):
    """Common fields of every fine-tuning job."""

    # `source_model_type` when only the original's `source_model_id` is given.
    default_source_model_type: ClassVar[ModelType | None] = None

    seed: int = Field(description="Seed for dataset subsampling and training")
    source_model: Model = Field(description="The model to fine-tune (the student's base)")
    max_dataset_size: int | None = Field(
        default=None,
        gt=0,
        le=MAX_ROWS,
        description="Train on a seeded random subset of at most this many rows",
    )

    @model_validator(mode="before")
    @classmethod
    def _source_model_from_original_fields(cls, data: Any) -> Any:
        """The original code's `source_model_id` / `source_model_type` -> `source_model`."""
        if not isinstance(data, dict) or not {"source_model_id", "source_model_type"} & set(data):
            return data
        data = dict(data)
        model_id = data.pop("source_model_id", None)
        model_type = data.pop("source_model_type", None) or cls.default_source_model_type
        if "source_model" in data:
            raise ValueError(
                f"{cls.__name__}: give either source_model or source_model_id/source_model_type"
                ", not both"
            )
        if model_id is None or model_type is None:
            missing = "source_model_id" if model_id is None else "source_model_type"
            raise ValueError(
                f"{cls.__name__}: {missing} is missing (or give source_model=Model(...))"
            )
        data["source_model"] = {"id": model_id, "type": model_type}
        return data

    @property
    def source_model_id(self) -> str:
        """The original code's name for `source_model.id`."""
        return self.source_model.id

    @source_model_id.setter
    def source_model_id(self, value: str) -> None:
        self.source_model = self._edited_source_model("id", value)

    @property
    def source_model_type(self) -> ModelType:
        """The original code's name for `source_model.type`."""
        return self.source_model.type

    @source_model_type.setter
    def source_model_type(self, value: ModelType) -> None:
        self.source_model = self._edited_source_model("type", value)

    def _edited_source_model(self, field: str, value: Any) -> Model:
        """A copy of `source_model` with `field` set (validated: a bad value is refused in one
        line); the model object itself may be shared with other configs, so it is not edited."""
        model = self.source_model.model_copy()
        setattr(model, field, value)
        return model

    def describe(self) -> str:
        """What the output's sidecar calls the job (shown when another run meets it)."""
        return f"fine-tune of {self.source_model.id}"

    def training_rows(self, dataset: list[DatasetRow]) -> list[DatasetRow]:
        """The rows to train on: all, or a seeded subset of `max_dataset_size` (`select_rows`,
        the same rows for every backend)."""
        return select_rows(dataset, self.max_dataset_size, self.seed)


class OpenAIFTJob(FTJob):
    """Supervised fine-tuning through the OpenAI fine-tuning API."""

    default_source_model_type: ClassVar[ModelType | None] = "openai"

    n_epochs: int | Literal["auto"] = Field(default=10, description='Epochs (>= 1) or "auto"')
    lr_multiplier: float | Literal["auto"] = Field(
        default="auto", description='Learning-rate multiplier (> 0) or "auto"'
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto", description='Batch size (>= 1) or "auto"'
    )

    @field_validator("n_epochs", "batch_size")
    @classmethod
    def _at_least_one(cls, value: int | str, info: ValidationInfo) -> int | str:
        most = MAX_EPOCHS if info.field_name == "n_epochs" else MAX_BATCH
        if value != "auto" and not 1 <= int(value) <= most:
            raise ValueError(f'{value} is not valid: use an integer in [1, {most}] or "auto"')
        return value

    @field_validator("lr_multiplier")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if value != "auto" and float(value) <= 0:
            raise ValueError(f'{value} is not valid: use a number > 0 or "auto"')
        return value


MAX_RANK = 65_536  # LoRA rank: above any layer width


class PeftCfg(HashableModel):
    """LoRA settings (PEFT `LoraConfig` fields)."""

    r: int = Field(default=8, gt=0, le=MAX_RANK, description="LoRA rank (paper: 8)")
    lora_alpha: int = Field(
        default=8, gt=0, description="LoRA scaling numerator: updates are scaled by alpha / r"
    )
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        description="Name suffixes of the linear layers that get adapters; names the model "
        "lacks are dropped (an error if none is left)",
    )
    bias: Literal["none", "all", "lora_only"] = Field(
        default="none", description="Which biases train: none, all, or those of LoRA layers"
    )
    use_rslora: bool = Field(
        default=False, description="Rank-stabilised LoRA: scale by alpha / sqrt(r)"
    )
    lora_dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input, in [0, 1)"
    )
    # Accepted for the original code's configs; only None is valid, and it is not part of the
    # config hash.
    loftq_config: None = Field(
        default=None, exclude=True, description="The original code's field; only None"
    )


class TrainCfg(HashableModel):
    """SFT training settings (TRL `SFTConfig` fields)."""

    n_epochs: int = Field(
        default=3, gt=0, le=MAX_EPOCHS, description="Passes over the training rows"
    )
    max_seq_length: int = Field(
        default=500,
        gt=0,
        le=MAX_TOKENS,
        description="Tokens per example (prompt + completion); longer cut",
    )
    lr: float = Field(default=2e-4, gt=0, description="Peak learning rate (AdamW)")
    lr_scheduler_type: str = Field(
        default="linear", description="transformers scheduler name: linear, cosine, constant, ..."
    )
    warmup_steps: int = Field(default=5, ge=0, description="Steps of linear warm-up to lr")
    per_device_train_batch_size: int = Field(
        default=22, gt=0, le=MAX_BATCH, description="Rows per step"
    )
    gradient_accumulation_steps: int = Field(
        default=3,
        gt=0,
        le=MAX_BATCH,
        description="Steps summed per update (effective batch: batch x this)",
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm")


_PeftCfgClass: TypeAlias = type[PeftCfg]
_TrainCfgClass: TypeAlias = type[TrainCfg]


class UnslothFinetuningJob(FTJob):
    """LoRA SFT of an open model: Unsloth + TRL when Unsloth is installed, else PEFT + TRL;
    with `full_finetune`, every weight trains instead (no LoRA).

    The adapter (or the full weights) is saved next to the output model JSON; it is pushed to
    the Hub as `hf_model_name` only when that and HF_TOKEN are set.
    """

    default_source_model_type: ClassVar[ModelType | None] = "open_source"

    hf_model_name: str | None = Field(
        default=None, description="Hub repo to push the adapter to (with HF_TOKEN); None: local"
    )
    peft_cfg: PeftCfg = Field(default_factory=lambda: PeftCfg(), description="LoRA settings")
    train_cfg: TrainCfg = Field(
        default_factory=lambda: TrainCfg(), description="SFT training settings"
    )
    backend: Literal["auto", "unsloth", "peft"] = Field(
        default="auto", description="auto: Unsloth if importable, else PEFT + TRL"
    )
    full_finetune: bool = Field(
        default=False,
        exclude_if=lambda v: not v,  # left out of the dump (and hash) at its default
        description="Train every weight of the student (no LoRA; `peft_cfg` is ignored) and "
        "save full fp32 weights instead of an adapter",
    )
    loss_mask: LossMask | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Completion tokens left out of the loss, per row (`LossMask`; a defence)",
    )

    # The original code defined these classes inside UnslothFinetuningJob.
    PeftCfg: ClassVar[_PeftCfgClass] = PeftCfg
    TrainCfg: ClassVar[_TrainCfgClass] = TrainCfg
