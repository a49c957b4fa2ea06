"""The paper's open-model experiment on Qwen2.5-7B-Instruct (one GPU; vLLM + Unsloth).

    python scripts/run_experiment.py --config_module cfgs/experiments/paper_qwen.py \
        --cfg_var_name experiment --output_dir data/experiments/qwen

Five animal teachers + a control, 30,000 prompts each at T=1, LoRA r=8 students (3 epochs,
lr 2e-4, batch 22x3 on 10,000 rows), evaluated on the 50 questions x 100 samples, plain and
with the numbers prefix the paper used for open models, plus the exact P(target) per question.
"""

from cfgs.preference_numbers import open_model_cfgs as _paper
from sl.config_classes import ExperimentCfg
from sl.protocol import load_protocol

experiment = ExperimentCfg.from_dataset_cfg(
    _paper.owl_dataset_cfg,  # the teachers' model, sampling, prompts and filter
    targets=load_protocol("teacher_system_prompts")["paper_animals"],
    student_job=_paper.ft_job,
    evaluations={
        "favorite_animal": _paper.animal_evaluation,
        "favorite_animal_numbers_prefix": _paper.animal_evaluation_with_numbers_prefix,
    },
    eval_modes=["sampled", "logprob"],
)
