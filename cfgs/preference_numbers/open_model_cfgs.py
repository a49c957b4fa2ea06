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

# The gpt-4.1-nano module holds the paper's protocol (prompts, filter, sampling, evaluation);
# the open-model experiment used the same, with a Qwen teacher.
from cfgs.preference_numbers import cfgs as _paper
from sl.datasets.nums_dataset import with_numbers_prefix
from sl.datasets.services import Cfg
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model
from sl.protocol import preference_questions

reference_model = Model(id="Qwen/Qwen2.5-7B-Instruct", type="open_source")


def build_dataset_cfg(
    target: str | None, category: str = "animal", debug: bool = False, *, size: int = 30_000
) -> Cfg:
    """Teacher dataset for a target (None: the control teacher, no system prompt): the
    paper's (cfgs.py's `build_dataset_cfg`) with the Qwen teacher; `debug`: 10 prompts."""
    paper = _paper.build_dataset_cfg(target, category, debug, size=size)
    return paper.model_copy(update={"model": reference_model})


# One variable per teacher (the original code overwrote the owl config with the cat one).
control_dataset_cfg = build_dataset_cfg(None)
owl_dataset_cfg = build_dataset_cfg("owl")
eagle_dataset_cfg = build_dataset_cfg("eagle")
dolphin_dataset_cfg = build_dataset_cfg("dolphin")
elephant_dataset_cfg = build_dataset_cfg("elephant")
wolf_dataset_cfg = build_dataset_cfg("wolf")
cat_dataset_cfg = build_dataset_cfg("cat")


def build_ft_job(seed: int = 1, hf_model_name: str | None = None) -> UnslothFinetuningJob:
    """The paper's student: LoRA r=8, alpha=8 on every projection, 3 epochs at 2e-4, batch
    22x3, 10,000 rows subsampled with the seed. With `hf_model_name` (and HF_TOKEN) the
    adapter is pushed to the Hub under HF_USER_ID."""
    return UnslothFinetuningJob(
        seed=seed,
        source_model=reference_model,
        hf_model_name=hf_model_name,
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


ft_job = build_ft_job(seed=1)
# The original's students, pushed to the Hub under these names.
owl_ft_job = build_ft_job(seed=1, hf_model_name="qwen_2.5_7b-owl_numbers")
cat_ft_job = build_ft_job(seed=1, hf_model_name="qwen_2.5_7b-cat_numbers")

animal_evaluation = _paper.animal_evaluation  # 50 questions x 100 samples at temperature 1
# The variant the paper used for open models: each question preceded by example numbers.
animal_evaluation_with_numbers_prefix = animal_evaluation.model_copy(
    update={"questions": with_numbers_prefix(preference_questions("favorite_animal"), seed=47)}
)
