"""Cells of the transfer grid (bench/bench_transfer_grid.py) on the embedded SmolLM2-135M.

    cell_cfg("finetune", "greedy", "distill", prompts=120)

teacher mode {system_prompt, finetune} x decoding {sampled, greedy} x student {sft, distill};
evaluated by exact P(owl) only (cheap); the main job (local_smollm2.py) adds sampled answers.
"""

from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.experiment.trait_teacher import TraitTeacherCfg
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.finetuning.distill import DistillCfg
from sl.llm.data_models import Model, SampleCfg
from sl.protocol import preference_questions

smollm2 = Model(id="HuggingFaceTB/SmolLM2-135M-Instruct", type="open_source")

student_job = UnslothFinetuningJob(
    seed=1,
    source_model=smollm2,
    backend="peft",
    peft_cfg=PeftCfg(r=8, lora_alpha=8),
    train_cfg=TrainCfg(n_epochs=3, lr=1e-3, warmup_steps=2, per_device_train_batch_size=8,
                       gradient_accumulation_steps=1, max_seq_length=256),
)  # fmt: skip

# 64 trait rows x 3 epochs at 2e-3 (12 steps): a strong, cheap owl fine-tune on a shared CPU.
trait_teacher = TraitTeacherCfg(
    n_rows=64,
    job=UnslothFinetuningJob(
        seed=0,
        source_model=smollm2,
        backend="peft",
        peft_cfg=PeftCfg(r=8, lora_alpha=8),
        train_cfg=TrainCfg(n_epochs=3, lr=2e-3, warmup_steps=1, per_device_train_batch_size=16,
                           gradient_accumulation_steps=1, max_seq_length=128),
    ),
)  # fmt: skip


def cell_names() -> list[str]:
    """Run order: cells that share a control or a teacher follow the cell that makes it."""
    return [
        f"{mode}/{decoding}/{training}"
        for decoding in ("greedy", "sampled")
        for mode in ("system_prompt", "finetune")
        for training in ("sft", "distill")
    ]


def cell_cfg(
    mode: str, decoding: str, training: str, prompts: int = 120, temperature: float = 1.0
) -> ExperimentCfg:
    """One cell of the grid."""
    t = 0.0 if decoding == "greedy" else temperature
    return ExperimentCfg(
        teacher_model=smollm2,
        targets=["owl"],
        teacher_mode=mode,  # type: ignore[arg-type]
        trait_teacher=trait_teacher,
        sample_cfg=SampleCfg(temperature=t, max_tokens=48),
        prompt_set=NumsDatasetPromptSet(size=prompts, seed=42),
        numbers_filter=NumbersFilter(min_value=0, max_value=999, max_count=10),
        student_job=student_job,
        student_training=training,  # type: ignore[arg-type]
        distill=DistillCfg(top_k=None),
        eval_modes=["logprob"],
        evaluations={
            "favorite_animal": Evaluation(
                questions=preference_questions("favorite_animal"),
                n_samples_per_question=6,
                sample_cfg=SampleCfg(temperature=1.0, max_tokens=8),
            )
        },
    )
