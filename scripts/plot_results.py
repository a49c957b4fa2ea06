"""Re-render an experiment's table and plot from its saved results (no recomputation).

python scripts/plot_results.py --output_dir data/experiments/local_smollm2
"""

from pathlib import Path

from sl.experiment.report import format_table, plot_results, read_results
from sl.utils.cli import ArgumentParser, run_script


def main() -> None:
    parser = ArgumentParser(__doc__)
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--png", type=Path, help="Where to write (default: results.png there)")
    args = parser.parse_args()
    rows = read_results(args.output_dir)
    png = args.png or args.output_dir / "results.png"
    plot_results(rows, png)
    print(format_table(rows))
    print(f"\nwrote {png}")


if __name__ == "__main__":
    run_script(main)
