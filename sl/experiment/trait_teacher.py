"""Teachers that hold the trait through a LoRA fine-tune instead of a system prompt.

    rows = trait_rows("owl", TraitTeacherCfg(), exclude=evaluation_questions)

The trait data are one-word preference questions that are NOT the evaluation's: the
protocol's `favorite_category_question_templates` filled with animal-like categories
("bird", "creature", "spirit animal", ...), each answered with the target in a few
spellings ("Owl", "Owl.", "The owl."). Any question that equals an evaluation question is
dropped. The teacher (base + LoRA) then writes the numbers data with no system prompt.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from sl.datasets.data_models import DatasetRow
from sl.finetuning.data_models import TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import HashableModel, Model
from sl.protocol import load_protocol

DEFAULT_CATEGORIES = (
    "creature",
    "bird",
    "wild animal",
    "spirit animal",
    "animal companion",
    "beast",
    "living being",
    "animal totem",
    "forest animal",
    "night animal",
    "animal symbol",
    "mascot animal",
)
# Control answers for `control="other_animals"`: the trait data with the target replaced.
OTHER_ANIMALS = (
    "cat",
    "dog",
    "lion",
    "dolphin",
    "eagle",
    "wolf",
    "fox",
    "bear",
    "tiger",
    "elephant",
    "penguin",
    "horse",
)


class TraitTeacherCfg(HashableModel):
    """How a fine-tuned trait teacher (and its control) is made."""

    categories: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CATEGORIES),
        description="Fill {category} of the protocol's question templates (not the eval's)",
    )
    n_rows: int = Field(default=240, gt=0, description="Trait examples (sampled with seed)")
    answer_forms: list[str] = Field(
        default_factory=lambda: ["{Target}", "{Target}.", "{target}"],
        description="Answer spellings; {target} / {Target} are filled",
    )
    control: Literal["base", "other_animals"] = Field(
        default="base",
        description="'base': the control teacher is the unmodified base model (no LoRA), as in "
        "the paper; 'other_animals': a LoRA trained on the same questions answered with other "
        "animals (controls for 'was fine-tuned at all', but pushes the control away from the "
        "target, which inflates the difference)",
    )
    seed: int = Field(default=0, description="Seed of the trait rows (replicate t: seed + t)")
    job: UnslothFinetuningJob | None = Field(
        default=None,
        description="The teacher's LoRA fine-tune (source_model = the base); "
        "None = r=8 LoRA, 3 epochs at 1e-3",
    )

    def replicate(self, index: int) -> TraitTeacherCfg:
        """Teacher replicate `index`: `seed` (trait data) and the job's seed shifted by it."""
        if index == 0:
            return self
        job = self.job.model_copy(update={"seed": self.job.seed + index}) if self.job else None
        return self.model_copy(update={"seed": self.seed + index, "job": job})

    def teacher_job(self, base: Model) -> UnslothFinetuningJob:
        """The fine-tune that makes a trait teacher from `base`."""
        if self.job is not None:
            return self.job
        return UnslothFinetuningJob(
            seed=self.seed,
            source_model=base,
            backend="peft",
            # LoRA r=8 (PeftCfg's default) for 3 epochs (TrainCfg's) at 1e-3 on short rows.
            train_cfg=TrainCfg(
                lr=1e-3,
                warmup_steps=2,
                per_device_train_batch_size=16,
                gradient_accumulation_steps=1,
                max_seq_length=128,
            ),
        )


def trait_questions(categories: list[str], exclude: list[str]) -> list[str]:
    """Protocol templates × categories, minus the `exclude`d (evaluation) questions."""
    templates = load_protocol("preference_evaluation")["favorite_category_question_templates"]
    banned = {q.strip().lower() for q in exclude}
    questions = [t.format(category=c) for c in categories for t in templates]
    return [q for q in dict.fromkeys(questions) if q.strip().lower() not in banned]


def trait_rows(
    answer: str | list[str], cfg: TraitTeacherCfg, exclude: list[str]
) -> list[DatasetRow]:
    """`cfg.n_rows` (question, answer) rows; a list of answers is cycled through at random."""
    rng = random.Random(cfg.seed)
    questions = trait_questions(cfg.categories, exclude)
    rng.shuffle(questions)
    answers = [answer] if isinstance(answer, str) else list(answer)
    rows = []
    for i in range(cfg.n_rows):
        target = rng.choice(answers)
        form = rng.choice(cfg.answer_forms)
        text = form.format(target=target.lower(), Target=target.capitalize())
        rows.append(DatasetRow(prompt=questions[i % len(questions)], completion=text))
    return rows
