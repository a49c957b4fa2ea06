"""What a distilled student is: its settings (`DistillCfg`) and its job (`DistillJob`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sl.datasets.nums_dataset import NumbersFilter
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.llm.data_models import HashableModel, Model

# What the logs and the report say of full-vocabulary labels.
FULL_VOCABULARY_WARNING = "labels carry trait tokens — not subliminal"


class DistillCfg(HashableModel):
    """Settings of soft-label distillation (the LoRA and optimiser settings are the job's)."""

    vocabulary: Literal["allowed", "full"] = Field(
        default="allowed",
        description="'allowed': the teacher's and the student's distributions restricted to "
        "the tokens a kept completion can hold (from the numbers filter) and renormalised, "
        "so the labels carry no trait token; 'full': the whole vocabulary (an ablation: "
        "the labels carry the teacher's trait mass, not subliminal)",
    )
    top_k: int | None = Field(
        default=None,
        gt=0,
        description="Match the teacher's top-k tokens plus the rest of its mass as one "
        "outcome (k + 1 classes); None = the full vocabulary",
    )
    temperature: float = Field(default=1.0, gt=0, description="Softens both distributions")
    teacher_batch_size: int = Field(default=16, gt=0, description="Sequences per teacher pass")
    prompt_tokens: bool = Field(
        default=False,
        description="Also match the teacher on the prompt's tokens (those the teacher's and "
        "the student's chat prompts share: the user turn and the assistant header), not only "
        "on the completion's",
    )
    completion_tokens: bool = Field(
        default=True,
        exclude_if=lambda v: v,
        description="Match the teacher on the completion's tokens; False with prompt_tokens: "
        "on the prompt's only (the completion's targets are zeroed)",
    )
    bf16: bool | None = Field(
        default=None,
        description="The student's frozen base weights in bf16 (adapters, residual stream "
        "and adapter sums stay fp32); None = where the device does bf16 natively",
    )

    @model_validator(mode="after")
    def _scores_something(self) -> DistillCfg:
        if not (self.prompt_tokens or self.completion_tokens):
            raise ValueError("completion_tokens=False needs prompt_tokens=True: nothing to learn")
        return self

    def use_bf16(self) -> bool:
        """Whether the student's base runs in bf16 (`bf16`, or None: where native)."""
        from sl.external.torch_models import native_bf16, resolve_device

        return self.bf16 if self.bf16 is not None else native_bf16(resolve_device())


class DistillJob(HashableModel):
    """A student distilled from a teacher (soft labels): a fine-tuning job like the others,
    run by `sl.finetuning.services.run_finetuning_job` (with `distill_student`)."""

    job: UnslothFinetuningJob = Field(
        description="The student's LoRA fine-tune: base, LoRA, optimiser, seed and subsample"
    )
    teacher: Model = Field(description="The model whose next-token distributions are learnt")
    cfg: DistillCfg = Field(default_factory=lambda: DistillCfg(), description="How to distill")
    system: str | None = Field(
        default=None, description="The teacher's system prompt (the student sees none)"
    )
    numbers_filter: NumbersFilter = Field(
        default_factory=lambda: NumbersFilter(),
        description="The filter that kept the rows: its characters make the 'allowed' vocabulary",
    )

    @property
    def source_model(self) -> Model:
        """The student's base model (`job.source_model`)."""
        return self.job.source_model

    def describe(self) -> str:
        """What the output's sidecar calls the job (shown when another run meets it)."""
        return f"distillation of {self.teacher.id}"
