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

from cli import call_modal_phase, modal_phase_args, repo_module, run_script

from sl.datasets.services import Cfg
from sl.errors import UserError


def main() -> None:
    modal_client = repo_module("modal_client")
    args, cfg = modal_phase_args(
        __doc__,
        Cfg,
        {
            "raw_dataset": "Raw dataset JSONL to write",
            "filtered_dataset": "Filtered dataset JSONL to write",
        },
    )
    folder = args.cfg_var_name
    raw = modal_client.artifact_path(args, "raw_dataset", "datasets", f"{folder}/raw_dataset.jsonl")
    filtered = modal_client.artifact_path(
        args, "filtered_dataset", "datasets", f"{folder}/filtered_dataset.jsonl"
    )
    if raw == filtered:
        raise UserError("--raw_dataset_path and --filtered_dataset_path must differ")
    gpu = modal_client.needs_gpu([cfg.model])
    result = call_modal_phase(
        "generate_dataset", gpu, args, raw_dataset_path=raw, filtered_dataset_path=filtered
    )
    print(f"{result} (on the {modal_client.load_modal_app().VOLUME_NAME} volume)")


if __name__ == "__main__":
    run_script(main)
