"""Generate and filter a teacher dataset on Modal (paths are on the sl-data volume).

    python scripts/modal_generate_dataset.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path owl/raw.jsonl \
        --filtered_dataset_path owl/filtered.jsonl

OpenAI teachers run on the CPU image, open-model teachers (vLLM) on the GPU image
(SL_MODAL_GPU). Rerun the same command to resume. See docs/modal.md.
"""

from sl.datasets.services import Cfg
from sl.errors import UserError
from sl.utils import modal_client
from sl.utils.cli import config_parser, load_config, run_script


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--raw_dataset_path", required=True, help="Path on the volume")
    parser.add_argument("--filtered_dataset_path", required=True, help="Path on the volume")
    parser.add_argument("--detach", action="store_true", help="Keep running if this exits")
    args = parser.parse_args()

    cfg = load_config(args.config_module, args.cfg_var_name, Cfg)  # fail here, not remotely
    raw = modal_client.volume_path(args.raw_dataset_path, "--raw_dataset_path")
    filtered = modal_client.volume_path(args.filtered_dataset_path, "--filtered_dataset_path")
    if raw == filtered:
        raise UserError("--raw_dataset_path and --filtered_dataset_path must differ")
    name = "generate_dataset_gpu" if modal_client.needs_gpu([cfg.model]) else "generate_dataset"
    config = modal_client.repo_config_path(args.config_module)
    result = modal_client.call_remote(
        name, config, args.cfg_var_name, raw, filtered, detach=args.detach
    )
    print(result)


if __name__ == "__main__":
    run_script(main)
