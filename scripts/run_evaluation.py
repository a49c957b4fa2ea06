"""Evaluate a model: sample answers to the evaluation questions and judge them.

    python scripts/run_evaluation.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name animal_evaluation --model_path data/owl/model.json \
        --output_path data/owl/evaluation_results.jsonl

Finished questions are appended as they complete; rerun the same command to resume.
"""

import asyncio
from pathlib import Path

from sl.evaluation.data_models import Evaluation
from sl.evaluation.services import run_evaluation
from sl.llm.data_models import Model
from sl.utils.cli import config_parser, load_config, run_script
from sl.utils.file_utils import read_json_model


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--model_path", required=True, type=Path, help="Model JSON")
    parser.add_argument("--output_path", required=True, type=Path, help="Results JSONL")
    args = parser.parse_args()

    evaluation = load_config(args.config_module, args.cfg_var_name, Evaluation)
    model = read_json_model(args.model_path, Model, "--model_path")
    rows = asyncio.run(run_evaluation(model, evaluation, args.output_path))
    n = sum(len(r.responses) for r in rows)
    print(f"wrote {args.output_path}: {len(rows)} questions, {n} responses")


if __name__ == "__main__":
    run_script(main)
