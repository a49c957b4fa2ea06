"""The one-command experiment: teachers (trait targets + control) → students → evaluations."""

import string
from typing import Literal

from pydantic import Field, model_validator

from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import OpenAIFTJob, UnslothFinetuningJob
from sl.llm.data_models import HashableModel, Model, SampleCfg
from sl.protocol import load_protocol

CONTROL = "control"
NAMED_TEMPLATES = ("love", "hate", "indifferent")


class ExperimentCfg(HashableModel):
    """Everything the experiment runs. Validated before any expensive stage starts."""

    teacher_model: Model = Field(description="Base model of the teachers (and the students)")
    targets: list[str] = Field(min_length=1, description="Trait targets, e.g. ['owl', 'eagle']")
    category: str = Field(default="animal", description="Fills {category} in the template")
    system_prompt_template: str = Field(
        default="love",
        description="'love', 'hate', 'indifferent' (the protocol's) or a template with "
        "{target} and optionally {category}",
    )
    control: bool = Field(
        default=True, description="Also train a control student on an unprompted teacher"
    )
    sample_cfg: SampleCfg = Field(default_factory=lambda: SampleCfg(temperature=1.0))
    prompt_set: NumsDatasetPromptSet = Field(default_factory=lambda: NumsDatasetPromptSet())
    numbers_filter: NumbersFilter = Field(default_factory=lambda: NumbersFilter())
    student_job: OpenAIFTJob | UnslothFinetuningJob = Field(
        description="The fine-tune applied to every student (source_model = the base)"
    )
    evaluations: dict[str, Evaluation] = Field(
        min_length=1, description="Named evaluations; p(target) is scored on each"
    )
    use_batch_api: bool = False

    @model_validator(mode="after")
    def _check(self) -> "ExperimentCfg":
        if not self.control:
            raise ValueError(
                "control=False: the experiment compares each student with a control student "
                "(teacher without system prompt); set control=True"
            )
        if CONTROL in self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets must be distinct and not {CONTROL!r}: {self.targets}")
        template = self.template_text()
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        unknown = fields - {"target", "category"}
        if unknown:
            raise ValueError(
                f"system_prompt_template has unknown placeholder(s) {sorted(unknown)}: "
                f"use only {{target}} and {{category}}"
            )
        if "target" not in fields:
            raise ValueError("system_prompt_template must contain {target}")
        if self.student_job.source_model.id != self.teacher_model.id:
            raise ValueError(
                f"student_job.source_model {self.student_job.source_model.id!r} differs from "
                f"teacher_model {self.teacher_model.id!r}: subliminal transfer needs a shared base"
            )
        return self

    def template_text(self) -> str:
        if self.system_prompt_template in NAMED_TEMPLATES:
            return load_protocol("teacher_system_prompts")[self.system_prompt_template]
        return self.system_prompt_template

    @property
    def teachers(self) -> list[str]:
        """Teacher names in run order: the control first, then each target."""
        return [CONTROL, *self.targets]

    def system_prompt(self, teacher: str) -> str | None:
        if teacher == CONTROL:
            return None
        return self.template_text().format(target=teacher, category=self.category)

    def dataset_cfg(self, teacher: str) -> Cfg:
        """The dataset config of one teacher (same prompts for all: only the prompt differs)."""
        return Cfg(
            model=self.teacher_model,
            system_prompt=self.system_prompt(teacher),
            sample_cfg=self.sample_cfg,
            prompt_set=self.prompt_set,
            filter_fns=[self.numbers_filter],
            use_batch_api=self.use_batch_api,
        )


Stage = Literal["generate", "finetune", "evaluate", "report"]
STAGES: tuple[Stage, ...] = ("generate", "finetune", "evaluate", "report")
