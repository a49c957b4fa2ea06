"""Fine-tune a student model on a dataset and write the model JSON.

    python scripts/run_finetuning_job.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_ft_job --dataset_path data/owl/filtered_dataset.jsonl \
        --output_path data/owl/model.json

Rerunning the same command resumes the saved job (OpenAI) or reuses the trained adapter.
"""

import asyncio
from pathlib import Path

from sl.datasets.services import read_dataset
from sl.finetuning.data_models import FTJob
from sl.finetuning.services import run_finetuning_job
from sl.utils.cli import config_parser, load_config, run_script
from sl.utils.file_utils import write_json_atomic
from sl.utils.run_meta import claim_output, mark_complete


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--dataset_path", required=True, type=Path)
    parser.add_argument("--output_path", required=True, type=Path, help="Model JSON to write")
    args = parser.parse_args()

    job = load_config(args.config_module, args.cfg_var_name, FTJob)
    dataset = read_dataset(args.dataset_path)
    claim_output(
        args.output_path, job.model_hash(), f"fine-tune of {job.source_model.id}", "--output_path"
    )
    model = asyncio.run(run_finetuning_job(job, dataset, args.output_path))
    write_json_atomic(args.output_path, model.model_dump(mode="json"))
    mark_complete(args.output_path, model_id=model.id)
    print(f"wrote {args.output_path}: {model.id}")


if __name__ == "__main__":
    run_script(main)
