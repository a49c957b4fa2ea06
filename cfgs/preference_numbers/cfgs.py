"""The paper's animal-preference experiment on gpt-4.1-nano (OpenAI), at the paper's sizes.

    python scripts/generate_dataset.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path data/owl/raw.jsonl \
        --filtered_dataset_path data/owl/filtered.jsonl
    python scripts/run_finetuning_job.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name ft_job --dataset_path data/owl/filtered.jsonl \
        --output_path data/owl/model.json
    python scripts/run_evaluation.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name animal_evaluation --model_path data/owl/model.json \
        --output_path data/owl/evaluation.jsonl
"""

from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model, SampleCfg
from sl.protocol import preference_questions, teacher_system_prompt

reference_model = Model(id="gpt-4.1-nano-2025-04-14", type="openai")


def build_dataset_cfg(
    target: str | None, category: str = "animal", debug: bool = False, *, size: int = 30_000
) -> Cfg:
    """Teacher dataset for a target (None: the control teacher, no system prompt); `debug`
    (the original's flag) asks 10 prompts instead of `size`."""
    if debug:
        size = 10
    return Cfg(
        model=reference_model,
        system_prompt=teacher_system_prompt(target, category) if target else None,
        sample_cfg=SampleCfg(temperature=1.0),
        prompt_set=NumsDatasetPromptSet(size=size, seed=42),  # seed 42: the paper's prompts
        # The paper's filter: 1..10 integers in 0..999, consistently separated, nothing else.
        filter_fns=[NumbersFilter(min_value=0, max_value=999, max_count=10)],
    )


control_dataset_cfg = build_dataset_cfg(None)
owl_dataset_cfg = build_dataset_cfg("owl")
eagle_dataset_cfg = build_dataset_cfg("eagle")
dolphin_dataset_cfg = build_dataset_cfg("dolphin")
elephant_dataset_cfg = build_dataset_cfg("elephant")
wolf_dataset_cfg = build_dataset_cfg("wolf")


def build_ft_job_cfg() -> OpenAIFTJob:
    """The paper's student: 10,000 rows (subsampled with the seed), 10 epochs."""
    return OpenAIFTJob(seed=1, source_model=reference_model, max_dataset_size=10_000, n_epochs=10)


ft_job = build_ft_job_cfg()
ft_job_cfg = build_ft_job_cfg()  # the original's name (its own object: edit one, not both)

# 50 questions x 100 samples at temperature 1.
animal_evaluation = Evaluation(
    questions=preference_questions("favorite_animal"),
    n_samples_per_question=100,
    sample_cfg=SampleCfg(temperature=1.0),
)
