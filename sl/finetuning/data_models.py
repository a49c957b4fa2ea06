"""Fine-tuning jobs. Field names match the original code so existing config modules work."""

import random
from typing import Literal

from pydantic import Field, field_validator

from sl.datasets.data_models import DatasetRow
from sl.llm.data_models import HashableModel, Model


class FTJob(HashableModel):
    """Common fields of every fine-tuning job."""

    seed: int = Field(description="Seed for dataset subsampling and training")
    source_model: Model = Field(description="The model to fine-tune (the student's base)")
    max_dataset_size: int | None = Field(
        default=None, gt=0, description="Train on a seeded random subset of at most this many rows"
    )

    def training_rows(self, dataset: list[DatasetRow]) -> list[DatasetRow]:
        """The rows to train on: all, or a random subset of `max_dataset_size` for the seed."""
        if self.max_dataset_size is None or len(dataset) <= self.max_dataset_size:
            return list(dataset)
        return random.Random(self.seed).sample(dataset, self.max_dataset_size)


class OpenAIFTJob(FTJob):
    """Supervised fine-tuning through the OpenAI fine-tuning API."""

    n_epochs: int | Literal["auto"] = Field(default=10, description='Epochs (>= 1) or "auto"')
    lr_multiplier: float | Literal["auto"] = Field(
        default="auto", description='Learning-rate multiplier (> 0) or "auto"'
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto", description='Batch size (>= 1) or "auto"'
    )

    @field_validator("n_epochs", "batch_size")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if value != "auto" and int(value) < 1:
            raise ValueError(f'{value} is not valid: use an integer >= 1 or "auto"')
        return value

    @field_validator("lr_multiplier")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if value != "auto" and float(value) <= 0:
            raise ValueError(f'{value} is not valid: use a number > 0 or "auto"')
        return value


class PeftCfg(HashableModel):
    """LoRA settings (PEFT `LoraConfig` fields)."""

    r: int = Field(default=8, gt=0)
    lora_alpha: int = Field(default=8, gt=0)
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )
    bias: Literal["none", "all", "lora_only"] = "none"
    use_rslora: bool = False
    lora_dropout: float = 0.0


class TrainCfg(HashableModel):
    """SFT training settings (TRL `SFTConfig` fields)."""

    n_epochs: int = Field(default=3, gt=0)
    max_seq_length: int = Field(default=500, gt=0)
    lr: float = Field(default=2e-4, gt=0)
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(default=5, ge=0)
    per_device_train_batch_size: int = Field(default=22, gt=0)
    gradient_accumulation_steps: int = Field(default=3, gt=0)
    max_grad_norm: float = Field(default=1.0, gt=0)


class UnslothFinetuningJob(FTJob):
    """LoRA SFT of an open model: Unsloth + TRL when Unsloth is installed, else PEFT + TRL.

    The adapter is saved next to the output model JSON; it is pushed to the Hub as
    `hf_model_name` only when that and HF_TOKEN are set.
    """

    hf_model_name: str | None = None
    peft_cfg: PeftCfg = Field(default_factory=lambda: PeftCfg())
    train_cfg: TrainCfg = Field(default_factory=lambda: TrainCfg())
    backend: Literal["auto", "unsloth", "peft"] = Field(
        default="auto", description="auto: Unsloth if importable, else PEFT + TRL"
    )
