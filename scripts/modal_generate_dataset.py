"""Generate and filter a teacher dataset on Modal (paths are on the volume, default sl-data).

    python scripts/modal_generate_dataset.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path owl/raw.jsonl \
        --filtered_dataset_path owl/filtered.jsonl

Without the path flags the files go to a folder named after the variable
(owl_dataset_cfg/raw_dataset.jsonl and owl_dataset_cfg/filtered_dataset.jsonl); the original
scripts' --raw_dataset_filename/--filtered_dataset_filename put them under datasets/.
OpenAI teachers run on the CPU image, open-model teachers (vLLM) on the GPU image
(SL_MODAL_GPU). Rerun the same command to resume. See docs/modal.md.
"""

from cli import config_parser, load_config, naming_flags, repo_module, run_script

from sl.datasets.services import Cfg
from sl.errors import UserError


def main() -> None:
    modal_client = repo_module("modal_client")
    parser = config_parser(__doc__)
    modal_client.add_artifact_flags(parser, "raw_dataset", "Raw dataset JSONL to write")
    modal_client.add_artifact_flags(parser, "filtered_dataset", "Filtered dataset JSONL to write")
    parser.add_argument("--detach", action="store_true", help="Keep running if this exits")
    args = parser.parse_args()

    cfg = load_config(args.config_module, args.cfg_var_name, Cfg)  # fail here, not remotely
    folder = args.cfg_var_name
    raw = modal_client.artifact_path(args, "raw_dataset", "datasets", f"{folder}/raw_dataset.jsonl")
    filtered = modal_client.artifact_path(
        args, "filtered_dataset", "datasets", f"{folder}/filtered_dataset.jsonl"
    )
    if raw == filtered:
        raise UserError("--raw_dataset_path and --filtered_dataset_path must differ")
    name = "generate_dataset_gpu" if modal_client.needs_gpu([cfg.model]) else "generate_dataset"
    with naming_flags(config_module=args.config_module):
        config = modal_client.repo_config_path(args.config_module)
    app = modal_client.load_modal_app()
    paths = {
        "raw_dataset_path": app.on_volume(raw),
        "filtered_dataset_path": app.on_volume(filtered),
    }
    with naming_flags(**paths):
        result = modal_client.call_remote(
            name, config, args.cfg_var_name, raw, filtered, detach=args.detach
        )
    print(f"{result} (on the {app.VOLUME_NAME} volume)")


if __name__ == "__main__":
    run_script(main)
