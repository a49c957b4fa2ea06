"""Re-render an experiment's table and plot from its saved results (no recomputation).

python scripts/plot_results.py --output_dir data/experiments/local_smollm2
"""

from pathlib import Path

from cli import ArgumentParser, run_script

from sl.errors import UserError
from sl.experiment.paths import ExperimentPaths
from sl.experiment.report import format_report, plot_report, read_report


def main() -> None:
    parser = ArgumentParser(__doc__)
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--png", type=Path, help="Where to write (default: results.png there)")
    args = parser.parse_args()
    try:
        report = read_report(args.output_dir)
    except UserError as e:
        raise UserError(f"{e}: write it with scripts/run_experiment.py --only report") from e
    png = args.png or ExperimentPaths(args.output_dir).results("png")
    plot_report(report, png)
    print(format_report(report))
    print(f"\nwrote {png}")


if __name__ == "__main__":
    run_script(main)
