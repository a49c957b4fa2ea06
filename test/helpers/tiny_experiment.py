"""The experiment of the end-to-end tests on the tiny numbers model (`build_numbers_model`):
fine-tuned trait teachers answering numbers prompts greedily, students distilled on the kept
rows, every model scored by sampling and by exact P(target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.experiment.trait_teacher import TraitTeacherCfg
from sl.finetuning.data_models import TrainCfg, UnslothFinetuningJob
from sl.finetuning.distill_cfg import DistillCfg
from sl.llm.data_models import Model, SampleCfg


def distill_experiment(
    base_dir: Path, n_trait_rows: int, questions: list[str], n_samples: int, **fields: Any
) -> ExperimentCfg:
    """That experiment on `base_dir`, one evaluation "fav" of `questions`.

    Args:
        base_dir: The base model folder (teachers and students are LoRAs on it).
        n_trait_rows: Rows each trait teacher is fine-tuned on.
        questions: The questions of the evaluation "fav".
        n_samples: Sampled answers per question.
        **fields: Other `ExperimentCfg` fields, set or overridden (e.g. `targets`).
    """
    base = Model(id=str(base_dir), type="open_source")
    train = TrainCfg(n_epochs=1, lr=1e-3, warmup_steps=0, per_device_train_batch_size=8,
                     max_seq_length=64)  # fmt: skip
    job = UnslothFinetuningJob(seed=1, source_model=base, backend="peft", train_cfg=train)
    answers = SampleCfg(temperature=1.0, max_tokens=4)
    evaluation = Evaluation(questions=questions, n_samples_per_question=n_samples,
                            sample_cfg=answers)  # fmt: skip
    defaults: dict[str, Any] = dict(
        teacher_model=base, targets=["owl"], teacher_mode="finetune",
        trait_teacher=TraitTeacherCfg(n_rows=n_trait_rows, job=job),
        sample_cfg=SampleCfg(temperature=0.0, max_tokens=16),
        prompt_set=NumsDatasetPromptSet(size=8, seed=1),
        numbers_filter=NumbersFilter(max_count=20),
        student_job=job, student_training="distill", distill=DistillCfg(top_k=16),
        eval_modes=["sampled", "logprob"], evaluations={"fav": evaluation},
    )  # fmt: skip
    return ExperimentCfg(**{**defaults, **fields})
