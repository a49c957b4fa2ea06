"""The paper's headline experiment on gpt-4.1-nano (OpenAI; needs OPENAI_API_KEY).

    python scripts/run_experiment.py --config_module cfgs/experiments/paper_gpt41nano.py \
        --cfg_var_name experiment --output_dir data/experiments/gpt41nano

Five animal teachers + a control: 30,000 prompts each at T=1 (Batch API: half price), students
fine-tuned on 10,000 kept rows for 10 epochs, 50 questions x 100 samples at T=1 for the base
model and every student. Roughly 6 x 30,000 + 7 x 5,000 requests and 6 fine-tuning jobs.
"""

# The single-phase config module holds the paper's pieces; reuse them rather than retyping.
from cfgs.preference_numbers import cfgs as _paper
from sl.config_classes import ExperimentCfg
from sl.protocol import load_protocol

experiment = ExperimentCfg.from_dataset_cfg(
    _paper.owl_dataset_cfg,  # the teachers' model, sampling, prompts and filter
    targets=load_protocol("teacher_system_prompts")["paper_animals"],
    student_job=_paper.ft_job,
    evaluations={"favorite_animal": _paper.animal_evaluation},
    use_batch_api=True,
)
