"""Fine-tune a student on Modal (paths are on the volume, default subliminal-learning-data).

    python scripts/modal_run_finetuning.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name ft_job --dataset_path owl/filtered.jsonl --output_path owl/model.json

Without --output_path the model JSON goes to <cfg_var_name>/model.json; the original scripts'
--dataset_filename/--output_filename mean datasets/<name> and models/<name>.
OpenAI jobs are submitted and polled from the CPU image; open-model LoRA jobs (Unsloth/TRL)
train on the GPU image (SL_MODAL_GPU), the adapter next to the model JSON. Rerun to resume.
"""

from cli import modal_phase_script, run_script

if __name__ == "__main__":
    run_script(modal_phase_script("finetune", __doc__))
