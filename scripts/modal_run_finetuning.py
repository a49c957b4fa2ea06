"""Fine-tune a student on Modal (paths are on the volume, default sl-data).

    python scripts/modal_run_finetuning.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name ft_job --dataset_path owl/filtered.jsonl --output_path owl/model.json

Without --output_path the model JSON goes to <cfg_var_name>/model.json; the original scripts'
--dataset_filename/--output_filename mean datasets/<name> and models/<name>.
OpenAI jobs are submitted and polled from the CPU image; open-model LoRA jobs (Unsloth/TRL)
train on the GPU image (SL_MODAL_GPU), the adapter next to the model JSON. Rerun to resume.
"""

from cli import call_modal_phase, modal_phase_args, repo_module, run_script

from sl.finetuning.data_models import FTJob


def main() -> None:
    modal_client = repo_module("modal_client")
    args, job = modal_phase_args(
        __doc__,
        FTJob,
        {"dataset": "Dataset JSONL to train on (required)", "output": "Model JSON to write"},
    )
    dataset = modal_client.artifact_path(args, "dataset", "datasets", None)
    output = modal_client.artifact_path(args, "output", "models", f"{args.cfg_var_name}/model.json")
    gpu = modal_client.needs_gpu([job.source_model])
    model = call_modal_phase("finetune", gpu, args, dataset_path=dataset, output_path=output)
    print(f"wrote {output} on the {modal_client.load_modal_app().VOLUME_NAME} volume: {model.id}")


if __name__ == "__main__":
    run_script(main)
