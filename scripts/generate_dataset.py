"""Generate a teacher's numbers dataset, then filter it.

    python scripts/generate_dataset.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path data/owl/raw_dataset.jsonl \
        --filtered_dataset_path data/owl/filtered_dataset.jsonl

Rows are appended to the raw file as they arrive; rerun the same command to resume.
"""

import asyncio
from pathlib import Path

from loguru import logger

from sl.datasets import services as dataset_services
from sl.errors import UserError
from sl.utils.cli import config_parser, load_config, run_script
from sl.utils.run_meta import claim_output, mark_complete


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--raw_dataset_path", required=True, type=Path)
    parser.add_argument("--filtered_dataset_path", required=True, type=Path)
    args = parser.parse_args()
    if args.raw_dataset_path.resolve() == args.filtered_dataset_path.resolve():
        raise UserError("--raw_dataset_path and --filtered_dataset_path must differ")

    cfg = load_config(args.config_module, args.cfg_var_name, dataset_services.Cfg)
    key = cfg.generation_hash()
    claim_output(args.filtered_dataset_path, key, "filtered dataset", "--filtered_dataset_path")
    raw = asyncio.run(
        dataset_services.generate_raw_dataset(
            cfg.model,
            cfg.system_prompt,
            cfg.sample_cfg,
            cfg.prompt_set,
            raw_path=args.raw_dataset_path,
            use_batch_api=cfg.use_batch_api,
        )
    )
    filtered = dataset_services.apply_filters(raw, cfg.filter_fns)
    logger.info(f"kept {len(filtered)} of {len(raw)} rows ({len(filtered) / len(raw):.1%})")
    dataset_services.save_dataset(filtered, args.filtered_dataset_path)
    mark_complete(args.filtered_dataset_path, rows=len(filtered), raw_rows=len(raw))


if __name__ == "__main__":
    run_script(main)
