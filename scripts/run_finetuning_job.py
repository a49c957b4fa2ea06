"""Fine-tune a student model on a dataset and write the model JSON.

    python scripts/run_finetuning_job.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name ft_job --dataset_path data/owl/filtered_dataset.jsonl \
        --output_path data/owl/model.json

Rerunning the same command resumes the saved job (OpenAI) or reuses the trained adapter.
"""

from cli import phase_script, run_script

if __name__ == "__main__":
    run_script(phase_script("finetune", __doc__))
