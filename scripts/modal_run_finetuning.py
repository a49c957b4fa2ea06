"""Fine-tune a student on Modal (paths are on the volume, default sl-data).

    python scripts/modal_run_finetuning.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name ft_job --dataset_path owl/filtered.jsonl --output_path owl/model.json

Without --output_path the model JSON goes to <cfg_var_name>/model.json; the original scripts'
--dataset_filename/--output_filename mean datasets/<name> and models/<name>.
OpenAI jobs are submitted and polled from the CPU image; open-model LoRA jobs (Unsloth/TRL)
train on the GPU image (SL_MODAL_GPU), the adapter next to the model JSON. Rerun to resume.
"""

from cli import config_parser, load_config, naming_flags, repo_module, run_script

from sl.finetuning.data_models import FTJob


def main() -> None:
    modal_client = repo_module("modal_client")
    parser = config_parser(__doc__)
    modal_client.add_artifact_flags(parser, "dataset", "Dataset JSONL to train on (required)")
    modal_client.add_artifact_flags(parser, "output", "Model JSON to write")
    parser.add_argument("--detach", action="store_true", help="Keep running if this exits")
    args = parser.parse_args()

    job = load_config(args.config_module, args.cfg_var_name, FTJob)
    dataset = modal_client.artifact_path(args, "dataset", "datasets", None)
    output = modal_client.artifact_path(args, "output", "models", f"{args.cfg_var_name}/model.json")
    gpu = modal_client.needs_gpu([job.source_model])
    name = "finetune_gpu" if gpu else "finetune"
    with naming_flags(config_module=args.config_module):
        config = modal_client.repo_config_path(args.config_module)
    app = modal_client.load_modal_app()
    with naming_flags(dataset_path=app.on_volume(dataset), output_path=app.on_volume(output)):
        model = modal_client.call_remote(
            name, config, args.cfg_var_name, dataset, output, detach=args.detach
        )
    print(f"wrote {output} on the {app.VOLUME_NAME} volume: {model.id}")


if __name__ == "__main__":
    run_script(main)
