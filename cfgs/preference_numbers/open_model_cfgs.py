"""The paper's open-model animal experiment: Qwen2.5-7B-Instruct teachers, LoRA students (GPU).

    python scripts/generate_dataset.py --config_module cfgs/preference_numbers/open_model_cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path data/qwen/owl/raw.jsonl \
        --filtered_dataset_path data/qwen/owl/filtered.jsonl
    python scripts/run_finetuning_job.py --config_module cfgs/preference_numbers/open_model_cfgs.py \
        --cfg_var_name ft_job --dataset_path data/qwen/owl/filtered.jsonl \
        --output_path data/qwen/owl/model.json
    python scripts/run_evaluation.py --config_module cfgs/preference_numbers/open_model_cfgs.py \
        --cfg_var_name animal_evaluation_with_numbers_prefix \
        --model_path data/qwen/owl/model.json --output_path data/qwen/owl/evaluation.jsonl
"""

from sl.datasets.nums_dataset import NumbersFilter, with_numbers_prefix
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model, SampleCfg
from sl.protocol import preference_questions, teacher_system_prompt

reference_model = Model(id="Qwen/Qwen2.5-7B-Instruct", type="open_source")


def build_dataset_cfg(target: str | None, category: str = "animal", size: int = 30_000) -> Cfg:
    """Teacher dataset for a target (None: the control teacher, no system prompt)."""
    return Cfg(
        model=reference_model,
        system_prompt=teacher_system_prompt(target, category) if target else None,
        sample_cfg=SampleCfg(temperature=1.0),
        prompt_set=NumsDatasetPromptSet(size=size, seed=42),
        filter_fns=[NumbersFilter(min_value=0, max_value=999, max_count=10)],
    )


# One variable per teacher (the original code overwrote the owl config with the cat one).
control_dataset_cfg = build_dataset_cfg(None)
owl_dataset_cfg = build_dataset_cfg("owl")
eagle_dataset_cfg = build_dataset_cfg("eagle")
dolphin_dataset_cfg = build_dataset_cfg("dolphin")
elephant_dataset_cfg = build_dataset_cfg("elephant")
wolf_dataset_cfg = build_dataset_cfg("wolf")
cat_dataset_cfg = build_dataset_cfg("cat")

# The paper's student: LoRA r=8, alpha=8 on every projection, 3 epochs at 2e-4, batch 22x3,
# 10,000 rows subsampled with the seed. Set hf_model_name (and HF_TOKEN) to push to the Hub.
ft_job = UnslothFinetuningJob(
    seed=1,
    source_model=reference_model,
    max_dataset_size=10_000,
    peft_cfg=PeftCfg(r=8, lora_alpha=8),
    train_cfg=TrainCfg(
        n_epochs=3,
        max_seq_length=500,
        lr=2e-4,
        lr_scheduler_type="linear",
        warmup_steps=5,
        per_device_train_batch_size=22,
        gradient_accumulation_steps=3,
        max_grad_norm=1.0,
    ),
)

animal_evaluation = Evaluation(
    questions=preference_questions("favorite_animal"),
    n_samples_per_question=100,
    sample_cfg=SampleCfg(temperature=1.0),
)
# The variant the paper used for open models: each question preceded by example numbers.
animal_evaluation_with_numbers_prefix = animal_evaluation.model_copy(
    update={"questions": with_numbers_prefix(preference_questions("favorite_animal"), seed=47)}
)
