"""The one-command experiment: teachers (trait targets + control) → students → evaluations."""

import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.errors import UserError
from sl.evaluation.data_models import Evaluation
from sl.experiment.arms import StudentArm
from sl.experiment.trait_teacher import TraitTeacherCfg
from sl.finetuning.data_models import OpenAIFTJob, UnslothFinetuningJob
from sl.finetuning.distill_cfg import DistillCfg
from sl.llm.data_models import HashableModel, Model, SampleCfg
from sl.llm.engines import Engine, engine_of, models_where
from sl.protocol import TEACHER_TEMPLATES, teacher_template
from sl.utils.file_utils import path_component_problem
from sl.utils.fingerprint import json_hash

CONTROL = "control"
BASE = "base"  # the base model's name in the report and in evaluations/


class ExperimentCfg(HashableModel):
    """Everything the experiment runs. Validated before any expensive stage starts."""

    teacher_model: Model = Field(description="Base model of the teachers (and the students)")
    targets: list[str] = Field(min_length=1, description="Trait targets, e.g. ['owl', 'eagle']")
    category: str = Field(default="animal", description="Fills {category} in the template")
    system_prompt_template: str = Field(
        default="love",
        description=f"{', '.join(map(repr, TEACHER_TEMPLATES))} (the protocol's) or a "
        "template with {target} and optionally {category}",
    )
    sample_cfg: SampleCfg = Field(
        default_factory=lambda: SampleCfg(temperature=1.0),
        description="The teachers' sampling settings for the numbers",
    )
    prompt_set: NumsDatasetPromptSet = Field(
        default_factory=lambda: NumsDatasetPromptSet(),
        description="The numbers prompts (the same for every teacher)",
    )
    numbers_filter: NumbersFilter = Field(
        default_factory=lambda: NumbersFilter(), description="Which teacher answers are kept"
    )
    student_job: OpenAIFTJob | UnslothFinetuningJob = Field(
        description="The fine-tune applied to every student (source_model = the base)"
    )
    evaluations: dict[str, Evaluation] = Field(
        min_length=1, description="Named evaluations; p(target) is scored on each"
    )
    use_batch_api: bool = Field(
        default=False, description="OpenAI teachers only: sample through the Batch API"
    )
    teacher_mode: Literal["system_prompt", "finetune"] = Field(
        default="system_prompt",
        description="How teachers get the trait: the system prompt, or a LoRA fine-tune on "
        "trait answers (`trait_teacher`; open models only) with no system prompt",
    )
    trait_teacher: TraitTeacherCfg = Field(
        default_factory=lambda: TraitTeacherCfg(),
        description="Trait data, control kind and LoRA job of fine-tuned teachers",
    )
    student_training: Literal["sft", "distill"] = Field(
        default="sft",
        description="'sft': fine-tune on the sampled tokens; 'distill': match the teacher's "
        "next-token distribution on its sequences (open models only; `distill`)",
    )
    distill: DistillCfg = Field(
        default_factory=lambda: DistillCfg(), description="Soft-label distillation settings"
    )
    eval_modes: list[Literal["sampled", "logprob"]] = Field(
        default_factory=lambda: ["sampled"],
        min_length=1,
        description="'sampled': sample answers and count the target; 'logprob': exact "
        "P(answer starts with the target) per question (open models only)",
    )
    n_student_replicates: int = Field(
        default=1,
        ge=1,
        description="Students per teacher (replicates): student run r trains with seed "
        "student_job.seed + r; the run is the unit of the report's tests",
    )
    n_teacher_replicates: int = Field(
        default=1,
        ge=1,
        description="Fine-tuned teachers per target (teacher_mode='finetune' only): replicate t "
        "has trait_teacher seeds + t and writes its own dataset; each gets "
        "n_student_replicates students",
    )

    arms: list[StudentArm] = Field(
        default_factory=list,
        exclude_if=lambda v: not v,
        description="More student arms per target: defences and capacities (`StudentArm`); "
        "they extend the experiment in its own folder",
    )
    arm_eval_modes: list[Literal["sampled", "logprob"]] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The eval modes of the arms' students (None: `eval_modes`); each must be "
        "one of `eval_modes`",
    )
    entanglement_probe: bool = Field(
        default=False,
        exclude_if=lambda v: not v,
        description="Also probe each trait teacher's entangled numbers against the base "
        "(`sl.evaluation.entanglement`; open models only), an evaluate-stage step",
    )

    # Fields that extend an experiment without changing what it already ran: a config that
    # differs only in these shares the folder (`folder_key`).
    EXTENSIONS: ClassVar[tuple[str, ...]] = ("arms", "arm_eval_modes", "entanglement_probe")

    @model_validator(mode="after")
    def _check(self) -> "ExperimentCfg":
        named = [("targets", t) for t in self.targets]
        for field, name in [*named, *(("evaluations", e) for e in self.evaluations)]:
            problem = path_component_problem(name)
            if problem:  # each name is a folder or file name under the output folder
                raise ValueError(
                    f"{field}: {name!r} cannot name a folder ({problem}): use a plain name "
                    "such as 'owl'"
                )
        if {CONTROL, BASE} & set(self.targets) or len(set(self.targets)) != len(self.targets):
            raise ValueError(
                f"targets must be distinct and not {CONTROL!r} or {BASE!r}: {self.targets}"
            )
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
        # Option -> (whether it is used, what the teacher's engine must be able to do for it).
        open_only: dict[str, tuple[bool, Callable[[Engine], bool]]] = {
            "teacher_mode='finetune'": (
                self.teacher_mode == "finetune",
                lambda e: e.fine_tunes == "lora",
            ),
            "student_training='distill'": (
                self.student_training == "distill",
                lambda e: e.runs_locally,
            ),
            "eval_modes 'logprob'": ("logprob" in self.eval_modes, lambda e: e.can_score_logprobs),
        }
        if self.n_teacher_replicates > 1 and self.teacher_mode != "finetune":
            raise ValueError(
                "n_teacher_replicates > 1 needs teacher_mode='finetune' (a system-prompted "
                "teacher is the same model every time); use n_student_replicates"
            )
        for option, (used, capable) in open_only.items():
            if used and not (
                capable(engine_of(self.teacher_model))
                and isinstance(self.student_job, UnslothFinetuningJob)
            ):
                raise ValueError(
                    f"{option} needs a teacher_model of {models_where(capable)} and an "
                    "UnslothFinetuningJob student_job; use the defaults for OpenAI models"
                )
        self._check_arms()
        return self

    def _check_arms(self) -> None:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be distinct: {names}")
        local = engine_of(self.teacher_model).runs_locally and isinstance(
            self.student_job, UnslothFinetuningJob
        )
        for arm in self.arms:
            if (arm.attributed or arm.lora_rank or arm.full_finetune) and not local:
                raise ValueError(
                    f"arm {arm.name!r} needs an open teacher_model (token attribution reads "
                    "its log-probs; ranks and full fine-tuning are open-model students) and "
                    "an UnslothFinetuningJob student_job"
                )
            unknown = set(arm.targets or []) - set(self.targets)
            if unknown or arm.targets == []:
                raise ValueError(
                    f"arm {arm.name!r}: targets {arm.targets} must be some of {self.targets}"
                )
            if arm.distill_tokens is not None and self.student_training != "distill":
                raise ValueError(
                    f"arm {arm.name!r}: distill_tokens needs student_training='distill'"
                )
        if self.arm_eval_modes is not None and not set(self.arm_eval_modes) <= set(self.eval_modes):
            raise ValueError(
                f"arm_eval_modes {self.arm_eval_modes} must be some of eval_modes {self.eval_modes}"
            )
        if self.entanglement_probe and not engine_of(self.teacher_model).can_score_logprobs:
            raise ValueError(
                "entanglement_probe needs an open teacher_model (it reads exact probabilities)"
            )

    def folder_key(self) -> str:
        """The key of the experiment's output folder: the config's hash without its
        extensions (`EXTENSIONS`: arms, the entanglement probe), so adding an arm reuses
        every teacher, dataset and student already there."""
        return json_hash(self.model_dump(mode="json", exclude=set(self.EXTENSIONS)))

    def arm_teachers(self, arm: StudentArm) -> list[str]:
        """The teachers an arm trains students of: its targets (`StudentArm.targets`, else
        every target), and first the control when the arm changes the recipe
        (`StudentArm.own_control`)."""
        targets = [t for t in self.targets if arm.targets is None or t in arm.targets]
        return [CONTROL, *targets] if arm.own_control else targets

    def arm_runs(self, arm: StudentArm, teacher: str) -> list["StudentRun"]:
        """An arm's student runs of one teacher: the main arm's runs (same seeds, same teacher
        replicates), named for the arm."""
        return [
            StudentRun(run.teacher, run.run, replace(run.source, arm=_arm_data(arm)), arm.name)
            for run in self.student_runs(teacher)
        ]

    def arm_teacher_runs(self) -> list["TeacherRun"]:
        """The teacher replicates that write an arm's own rows (`teacher_sample_cfg`)."""
        return [
            replace(t, arm=arm.name)
            for arm in self.arms
            if arm.teacher_sample_cfg is not None
            for teacher in self.teachers
            for t in self.teacher_replicates(teacher)
        ]

    def all_arm_runs(self) -> list["StudentRun"]:
        """Every student run of every arm, arm by arm."""
        return [
            run
            for arm in self.arms
            for teacher in self.arm_teachers(arm)
            for run in self.arm_runs(arm, teacher)
        ]

    def arm_named(self, name: str) -> StudentArm:
        """The arm of a name."""
        return next(arm for arm in self.arms if arm.name == name)

    def template_text(self) -> str:
        """The system prompt template: the protocol's named one, or the field as given."""
        if self.system_prompt_template in TEACHER_TEMPLATES:
            return teacher_template(self.system_prompt_template)
        return self.system_prompt_template

    @property
    def teachers(self) -> list[str]:
        """Teacher names in run order: the control first, then each target."""
        return [CONTROL, *self.targets]

    @property
    def n_runs(self) -> int:
        """Student runs per arm (control and each target): teacher x student replicates."""
        return self.n_teacher_replicates * self.n_student_replicates

    def finetuned_teacher(self, teacher: str) -> bool:
        """Whether this teacher is a LoRA fine-tune (the 'base' control is the plain base)."""
        if self.teacher_mode != "finetune":
            return False
        return teacher != CONTROL or self.trait_teacher.control == "other_animals"

    def teacher_replicates(self, teacher: str) -> list["TeacherRun"]:
        """The distinct teachers of an arm: one per teacher replicate if it is fine-tuned,
        else one (the base model, or the base with the system prompt)."""
        n = self.n_teacher_replicates if self.finetuned_teacher(teacher) else 1
        return [TeacherRun(teacher, t) for t in range(n)]

    def student_runs(self, teacher: str) -> list["StudentRun"]:
        """The arm's student runs: run r learns from teacher replicate r // n_student_replicates
        (replicate 0 when the arm has one teacher) with seed student_job.seed + r."""
        replicates = self.teacher_replicates(teacher)
        runs = []
        for r in range(self.n_runs):
            source = replicates[min(r // self.n_student_replicates, len(replicates) - 1)]
            runs.append(StudentRun(teacher, r, source))
        return runs

    def student_job_of(self, run: "StudentRun") -> OpenAIFTJob | UnslothFinetuningJob:
        """The student fine-tune of one run (the seed is shifted by the run index)."""
        return self.student_job.model_copy(update={"seed": self.student_job.seed + run.run})

    def system_prompt(self, teacher: str) -> str | None:
        """The teacher's system prompt (None for the control and for fine-tuned teachers)."""
        if teacher == CONTROL or self.teacher_mode == "finetune":
            return None
        return self.template_text().format(target=teacher, category=self.category)

    def dataset_cfg(
        self, teacher: str, model: Model | None = None, sample_cfg: SampleCfg | None = None
    ) -> Cfg:
        """The dataset config of one teacher (same prompts for all: only the system prompt,
        or with `model` a fine-tuned teacher, differs; `sample_cfg` is an arm's sampling)."""
        return Cfg(
            model=model or self.teacher_model,
            system_prompt=self.system_prompt(teacher),
            sample_cfg=sample_cfg or self.sample_cfg,
            prompt_set=self.prompt_set,
            filter_fns=[self.numbers_filter],
            use_batch_api=self.use_batch_api,
        )

    @classmethod
    def from_dataset_cfg(cls, dataset_cfg: Cfg, **fields: Any) -> "ExperimentCfg":
        """The experiment whose teachers write their numbers as `dataset_cfg` does (a teacher
        dataset of a phase-by-phase config module): its model, sampling, prompts, filter and
        Batch API choice; `fields` give the rest (targets, student_job, evaluations, ...) and
        override those. The inverse of `dataset_cfg`: each teacher's system prompt comes from
        `system_prompt_template`, not from `dataset_cfg`.

        Raises:
            UserError: `dataset_cfg.filter_fns` is not one `NumbersFilter`.
        """
        filters = dataset_cfg.filter_fns
        if len(filters) != 1 or not isinstance(filters[0], NumbersFilter):
            raise UserError(
                "ExperimentCfg.from_dataset_cfg: dataset_cfg.filter_fns must be one "
                "NumbersFilter (the experiment's numbers_filter)"
            )
        taken = {
            "teacher_model": dataset_cfg.model,
            "sample_cfg": dataset_cfg.sample_cfg,
            "prompt_set": dataset_cfg.prompt_set,
            "numbers_filter": filters[0],
            "use_batch_api": dataset_cfg.use_batch_api,
        }
        return cls(**{**taken, **fields})


def _arm_data(arm: StudentArm) -> str | None:
    """The arm whose teachers write their own rows (None: the main teachers' rows)."""
    return arm.name if arm.teacher_sample_cfg is not None else None


@dataclass(frozen=True)
class TeacherRun:
    """One teacher replicate of an arm; replicate 0 keeps the arm's name, replicate t > 0 is
    named <teacher>_t<t> (its folders under teachers/ and datasets/). `arm` names a student
    arm whose teachers write their own rows (`StudentArm.teacher_sample_cfg`), else None."""

    teacher: str
    replicate: int = 0
    arm: str | None = None

    @property
    def name(self) -> str:
        base = self.teacher if self.replicate == 0 else f"{self.teacher}_t{self.replicate}"
        return base if self.arm is None else f"{self.arm}.{base}"

    @property
    def main(self) -> "TeacherRun":
        """The same teacher replicate in the main arm (whose model writes the rows)."""
        return replace(self, arm=None)


@dataclass(frozen=True)
class StudentRun:
    """Student run `run` of an arm and the teacher replicate whose data it learns from;
    `arm` names a student arm (`StudentArm`), None for the main one."""

    teacher: str
    run: int
    source: TeacherRun
    arm: str | None = None

    @property
    def name(self) -> str:
        """The run's name in evaluations/: <teacher>_run<r>, or <arm>.<teacher>_run<r>."""
        name = f"{self.teacher}_run{self.run}"
        return name if self.arm is None else f"{self.arm}.{name}"

    @property
    def condition(self) -> str:
        """The run's condition in the report: the teacher, or <arm>.<teacher>."""
        return self.teacher if self.arm is None else f"{self.arm}.{self.teacher}"


Stage = Literal["generate", "arms", "finetune", "evaluate", "report"]
STAGES: tuple[Stage, ...] = ("generate", "arms", "finetune", "evaluate", "report")
