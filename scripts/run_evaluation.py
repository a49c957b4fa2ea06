"""Evaluate a model: sample answers to the evaluation questions and judge them.

    python scripts/run_evaluation.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name animal_evaluation --model_path data/owl/model.json \
        --output_path data/owl/evaluation_results.jsonl

Every answer and judgment is saved as it arrives; rerun the same command to resume.
"""

from pathlib import Path

from cli import config_parser, evaluate, run_script


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--model_path", required=True, type=Path, help="Model JSON")
    parser.add_argument("--output_path", required=True, type=Path, help="Results JSONL")
    args = parser.parse_args()
    summary = evaluate(args.config_module, args.cfg_var_name, args.model_path, args.output_path)
    print(summary)


if __name__ == "__main__":
    run_script(main)
