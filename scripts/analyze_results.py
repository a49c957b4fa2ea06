"""Analyse evaluation result files (original JSONL format), one file per run, runs as the unit.

    python scripts/analyze_results.py \
        --condition default data/default_run1.jsonl data/default_run2.jsonl data/default_run3.jsonl \
        --condition control data/control_run{1,2,3}.jsonl \
        --condition eagle data/eagle_run{1,2,3}.jsonl \
        --targets eagle --base default --match exact --output_dir data/analysis

The condition named like a target is that target's student. Writes results.csv (target,
condition, match, mean, ci_low, ci_high, n_runs, n_responses, p_vs_control, test),
results.json (also each run's value, the exact permutation test over run labels, the paired
test over questions and specificity) and results.png (bars with 95 % t-CIs across runs).
A rerun replaces what an analysis wrote there; a file of those names that no analysis wrote
(the user's own, an experiment's report) is refused, never replaced.
"""

from pathlib import Path

from cli import ArgumentParser, naming_flags, naming_params, run_script

from sl.evaluation.analysis import analyze_result_files, format_analysis, write_analysis
from sl.evaluation.scoring import MATCH_RULES


def main() -> None:
    parser = ArgumentParser(__doc__)
    parser.add_argument(
        "--condition",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "FILE"),
        help="A condition's name, then its result files (one per run); repeat per condition",
    )
    parser.add_argument("--targets", nargs="+", required=True, help="Targets to score, e.g. owl")
    parser.add_argument("--control", default="control", help="Condition tested against")
    parser.add_argument("--base", help="Condition of the base model (optional)")
    parser.add_argument(
        "--match",
        choices=MATCH_RULES,
        default="word",
        help="word: names the target as a whole word (plurals count); exact: the whole answer "
        "is the target, case-insensitive (the original notebook's rule)",
    )
    parser.add_argument("--output_dir", required=True, type=Path)
    args = parser.parse_args()
    conditions: dict[str, list[str]] = {}
    for name, *files in args.condition:
        if name in conditions:
            parser.error(f"--condition {name} is given twice")
        conditions[name] = files
    with naming_params("condition", "control", "base", "targets"):
        analysis = analyze_result_files(
            conditions, args.targets, control=args.control, base=args.base, match=args.match
        )
    with naming_flags(output_dir=args.output_dir):
        paths = write_analysis(analysis, args.output_dir)
    print(format_analysis(analysis))
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    run_script(main)
