"""Fine-tune a student model on a dataset and write the model JSON.

    python scripts/run_finetuning_job.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name ft_job --dataset_path data/owl/filtered_dataset.jsonl \
        --output_path data/owl/model.json

Rerunning the same command resumes the saved job (OpenAI) or reuses the trained adapter.
"""

from pathlib import Path

from cli import config_parser, finetune, run_script


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--dataset_path", required=True, type=Path)
    parser.add_argument("--output_path", required=True, type=Path, help="Model JSON to write")
    args = parser.parse_args()
    model = finetune(args.config_module, args.cfg_var_name, args.dataset_path, args.output_path)
    print(f"wrote {args.output_path}: {model.id}")


if __name__ == "__main__":
    run_script(main)
