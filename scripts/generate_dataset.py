"""Generate a teacher's numbers dataset, then filter it.

    python scripts/generate_dataset.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path data/owl/raw_dataset.jsonl \
        --filtered_dataset_path data/owl/filtered_dataset.jsonl

Rows are appended to the raw file as they arrive; rerun the same command to resume.
"""

from pathlib import Path

from cli import config_parser, generate_dataset, run_script


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--raw_dataset_path", required=True, type=Path)
    parser.add_argument("--filtered_dataset_path", required=True, type=Path)
    args = parser.parse_args()
    summary = generate_dataset(
        args.config_module, args.cfg_var_name, args.raw_dataset_path, args.filtered_dataset_path
    )
    print(summary)


if __name__ == "__main__":
    run_script(main)
