r"""Token attribution: what a teacher, its base and counterfactual teachers make of each
completion token of a dataset (teacher-forced, batched, fp32 on the CPU).

    D=data/experiments/local_smollm2
    python scripts/analyze_tokens.py --dataset $D/datasets/owl/filtered.jsonl \
        --teacher $D/teachers/owl/model.json --counterfactual $D/teachers/eagle/model.json \
        --base HuggingFaceTB/SmolLM2-135M-Instruct --output_dir data/attribution/owl

A model (--teacher, --counterfactual, --base) is a model JSON written by sl or an open
model's Hub id or folder. A model JSON holds no system prompt: give a prompted teacher's with
--system_prompt, and each counterfactual's with --counterfactual_system_prompt (once per
--counterfactual, in order; "" for none). The base sees no system prompt.
Writes DIR/tokens.jsonl (per row and completion token: the teacher's, the base's and each
counterfactual's log-prob, each counterfactual's greedy token, divergent, score = teacher -
base log-prob) and DIR/summary.json (see docs/mechanisms.md). Rerun the same command to
resume; a finished run is read back.
"""

from pathlib import Path

from cli import ArgumentParser, naming_flags, naming_params, run_script

from sl.attribution.data_models import ModelContext
from sl.attribution.models import model_from_arg
from sl.attribution.services import SUMMARY, TOKENS, run_token_attribution
from sl.llm.data_models import Model

MODEL_FLAGS = ("teacher", "base", "counterfactual")


def _model(flag: str, value: str) -> Model:
    with naming_params(*MODEL_FLAGS), naming_flags(**{flag: value}):
        return model_from_arg(value, flag)


def main() -> None:
    parser = ArgumentParser(__doc__)
    parser.add_argument("--dataset", required=True, type=Path, help="sl dataset (JSONL rows)")
    parser.add_argument("--teacher", required=True, help="Model JSON, Hub id or model folder")
    parser.add_argument("--system_prompt", help="The teacher's system prompt (default: none)")
    parser.add_argument("--counterfactual", action="append", default=[],
                        help="A counterfactual teacher (repeatable)")  # fmt: skip
    parser.add_argument("--counterfactual_system_prompt", action="append", default=[],
                        help="Its system prompt: once per --counterfactual, in order")  # fmt: skip
    parser.add_argument("--base", required=True, help="The base model (no system prompt)")
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--batch_size", type=int, default=16, help="Rows per forward pass")
    args = parser.parse_args()
    prompts = args.counterfactual_system_prompt or [None] * len(args.counterfactual)
    if len(prompts) != len(args.counterfactual):
        parser.error(
            f"--counterfactual_system_prompt is given {len(prompts)} times for "
            f"{len(args.counterfactual)} --counterfactual: give it once per --counterfactual, "
            "in order, or not at all"
        )
    teacher = ModelContext(model=_model("teacher", args.teacher),
                           system_prompt=args.system_prompt or None)  # fmt: skip
    counterfactuals = [
        ModelContext(model=_model("counterfactual", value), system_prompt=prompt or None)
        for value, prompt in zip(args.counterfactual, prompts, strict=True)
    ]
    base = _model("base", args.base)
    with (
        naming_params(*MODEL_FLAGS, "batch_size"),
        naming_flags(dataset=args.dataset, output_dir=args.output_dir),
    ):
        summary = run_token_attribution(
            args.dataset, teacher, base, counterfactuals, args.output_dir, args.batch_size
        )
    fraction = summary["fraction_divergent"]
    print(
        f"{summary['n_rows']} rows, {summary['n_tokens']} completion tokens, "
        f"{summary['n_divergent']} divergent"
        + (f" ({fraction:.1%})" if fraction is not None else "")
        + f"; {summary['n_rows_not_retokenized']} rows do not re-tokenize to their text"
        + f"\nwrote {args.output_dir / TOKENS}, {args.output_dir / SUMMARY}"
    )


if __name__ == "__main__":
    run_script(main)
