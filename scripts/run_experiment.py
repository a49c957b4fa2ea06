"""Run a whole experiment: teachers (targets + control) → students → evaluation → table + plot.

    python scripts/run_experiment.py --config_module cfgs/experiments/local_smollm2.py \
        --cfg_var_name experiment --output_dir data/experiments/local_smollm2

Rerunning skips finished stages and resumes unfinished ones. `--only finetune evaluate` or
`--skip report` run part of it. `--workers N` runs N of a stage's steps at once (default: 2
for open models on a CPU of 2+ cores, each with half the threads). Stages: generate, finetune, evaluate, report. The table
printed at the end (also results.csv/json/png) has every run's value, the mean across runs
with a 95 % t-CI, student vs control with the run as the unit, specificity and the
condition x target matrix.
"""

import asyncio
from pathlib import Path

from cli import config_parser, load_config, naming_flags, run_script

from sl.errors import UserError
from sl.experiment.data_models import STAGES, ExperimentCfg
from sl.experiment.report import format_report
from sl.experiment.runner import default_workers, run_experiment


def main() -> None:
    parser = config_parser(__doc__)
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--only", nargs="+", choices=STAGES, help="Run only these stages")
    parser.add_argument("--skip", nargs="+", choices=STAGES, default=[], help="Skip stages")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Processes running a stage's steps at once (default: 2 for open models on a "
        "CPU with 2+ cores, else 1)",
    )
    args = parser.parse_args()
    if args.only and args.skip:
        raise UserError("use either --only or --skip, not both")

    cfg = load_config(args.config_module, args.cfg_var_name, ExperimentCfg, args.overrides)
    stages = tuple(s for s in STAGES if s in (args.only or STAGES) and s not in args.skip)
    with naming_flags(output_dir=args.output_dir):
        workers = args.workers if args.workers is not None else default_workers(cfg)
        report = asyncio.run(run_experiment(cfg, args.output_dir, stages, workers))
    if report is not None:
        print(format_report(report))
        print(f"\nwrote {args.output_dir}/results.csv, results.json and results.png")


if __name__ == "__main__":
    run_script(main)
