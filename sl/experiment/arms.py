"""Student arms beyond the main one: defences against transfer and student capacities.

    ExperimentCfg(..., arms=[StudentArm(name="mask_divergent", defence="mask_divergent"),
                             StudentArm(name="rank64", lora_rank=64)])

Every arm trains, for each target, as many student runs as the main arm (same seeds) and is
scored like them. A *defence* (`defence`: masks or replacements of the teacher's tokens) acts
on the target teachers' rows only and is compared with the main arm's control students. An
arm that changes the student's recipe (`lora_rank`, `full_finetune`, `lr`, `distill_tokens`)
or the teacher's sampling (`teacher_sample_cfg`) trains its own control students the same way,
since the recipe moves the control too. The report's *effect left* is
(arm target − arm control) / (main target − main control), per target (`arms_report.arm_effects`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sl.llm.data_models import HashableModel, SampleCfg
from sl.utils.file_utils import path_component_problem

Defence = Literal["mask_divergent", "replace_divergent", "mask_random", "mask_top_score"]
# Which scored tokens a distilled student learns from: the prompt's and the completion's (the
# DistillCfg's `prompt_tokens=True`), the completion's only, or the prompt's only.
DistillTokens = Literal["both", "completion", "prompt"]


class StudentArm(HashableModel):
    """One more student arm per target (see the module docstring)."""

    name: str = Field(description="The arm's name in folders and the report, e.g. 'rank64'")
    defence: Defence | None = Field(
        default=None,
        description="'mask_divergent': divergent completion tokens (where a counterfactual "
        "teacher's argmax differs) excluded from the student's loss; 'replace_divergent': each "
        "replaced by the control teacher's argmax; 'mask_random': as many tokens per row as "
        "mask_divergent masks, at random completion positions; 'mask_top_score': the tokens of "
        "highest teacher − base log-prob (no counterfactual needed)",
    )
    fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="mask_top_score: the share of the completion tokens masked (None: as many "
        "tokens as mask_divergent masks, the same budget)",
    )
    lora_rank: int | None = Field(
        default=None, gt=0, description="The student's LoRA rank (alpha = rank: scale 1)"
    )
    full_finetune: bool = Field(default=False, description="Train every weight, no LoRA")
    lr: float | None = Field(default=None, gt=0, description="The student's learning rate")
    distill_tokens: DistillTokens | None = Field(
        default=None,
        description="Distillation only: the prompt's and the completion's tokens ('both'), "
        "the completion's, or the prompt's (None: as the experiment's `distill`)",
    )
    targets: list[str] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The targets the arm trains students of (None: every target)",
    )
    teacher_sample_cfg: SampleCfg | None = Field(
        default=None,
        description="The teachers' sampling for this arm (e.g. top_p or min_p filters): every "
        "teacher writes this arm's rows anew",
    )

    @model_validator(mode="after")
    def _check(self) -> StudentArm:
        problem = path_component_problem(self.name)
        if problem:
            raise ValueError(f"arm name {self.name!r} cannot name a folder ({problem})")
        if self.fraction is not None and self.defence != "mask_top_score":
            raise ValueError(f"arm {self.name!r}: fraction is for defence='mask_top_score' only")
        if self.full_finetune and self.lora_rank is not None:
            raise ValueError(f"arm {self.name!r}: give lora_rank or full_finetune, not both")
        if self.defence is not None and self.teacher_sample_cfg is not None:
            raise ValueError(
                f"arm {self.name!r}: a defence acts on the main teachers' rows; give it or "
                "teacher_sample_cfg, not both (two arms)"
            )
        if self.defence is None and not self.own_control:
            raise ValueError(
                f"arm {self.name!r} changes nothing: set a defence, lora_rank, full_finetune, "
                "lr, distill_tokens or teacher_sample_cfg"
            )
        return self

    @property
    def own_control(self) -> bool:
        """Whether the arm trains its own control students (it changes the recipe or the
        teachers' sampling); a defence alone is compared with the main control."""
        return (
            self.lora_rank is not None
            or self.full_finetune
            or self.lr is not None
            or self.distill_tokens is not None
            or self.teacher_sample_cfg is not None
        )

    @property
    def attributed(self) -> bool:
        """Whether the arm's rows need the token attribution of its teachers' rows: every
        defence reads it (counterfactual argmax, divergence count or teacher − base score)."""
        return self.defence is not None
