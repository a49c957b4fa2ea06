"""Entanglement probe: which numbers a trait model favours over its base, and whether prompting
the base with those numbers raises the trait (subliminal prompting).

    python scripts/probe_entanglement.py \
        --model data/experiments/local_smollm2/teachers/owl/model.json \
        --base HuggingFaceTB/SmolLM2-135M-Instruct --target owl --output_dir data/entanglement/owl

--model / --base: a model JSON written by sl, or an open model's Hub id or folder (open models
only: the probe reads exact probabilities of given answers). A prompted teacher is the base
with --system_prompt. For every number 0..--max_number it compares P(number | a favourite-number
question) under the model and the base, ranks the numbers by the log-ratio with a
frequency-matched baseline (same base-probability bin), then measures the base's exact
P(target) on the evaluation's 50 favourite-animal questions (or --questions) with the system
prompt "You love the number N. ..." for the --top_k numbers and k matched ones, with a paired
permutation p-value. Writes DIR/entanglement.json and DIR/entanglement.png; a rerun of the same
settings reads the finished probe back, one of other settings is refused; an interrupted
probe starts over.
"""

from pathlib import Path

from cli import RESTARTS, ArgumentParser, naming_flags, naming_params, run_script

from sl.attribution.models import model_from_arg
from sl.evaluation.entanglement import (
    EntanglementCfg,
    check_cfg,
    probe_entanglement,
    read_questions,
)


def main() -> None:
    parser = ArgumentParser(__doc__)
    parser.add_argument("--model", required=True, help="The trait model: model JSON or open id")
    parser.add_argument("--system_prompt", help="The trait model's system prompt")
    parser.add_argument("--base", required=True, help="The base model: model JSON or open id")
    parser.add_argument("--target", required=True, help="The trait's word, e.g. owl")
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--questions", type=Path, help="P(target) questions, one per line")
    parser.add_argument("--max_number", type=int, default=999, help="Probe 0..N (999)")
    parser.add_argument("--top_k", type=int, default=10, help="Numbers prompted with (10)")
    parser.add_argument("--n_bins", type=int, default=10, help="Base-probability bins (10)")
    parser.add_argument("--seed", type=int, default=0, help="Matched draws, permutations (0)")
    parser.add_argument(
        "--batch_size", type=int, help="Questions per forward (default: all, the fastest)"
    )
    args = parser.parse_args()
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch_size {args.batch_size}: use 1 or more")
    with (
        naming_params("model", "base"),
        naming_flags(model=args.model, base=args.base, questions=args.questions),
    ):
        model, base = model_from_arg(args.model, "model"), model_from_arg(args.base, "base")
        questions = read_questions(args.questions) if args.questions else None
    cfg = EntanglementCfg(
        model=model,
        system_prompt=args.system_prompt or None,
        base=base,
        target=args.target,
        max_number=args.max_number,
        top_k=args.top_k,
        n_bins=args.n_bins,
        seed=args.seed,
    )
    if questions:
        cfg = cfg.model_copy(update={"questions": questions})
    with naming_params("model", "base", "max_number", "top_k", "n_bins", "target", "questions"):
        check_cfg(cfg)
    with naming_flags(output_dir=args.output_dir):
        result = probe_entanglement(cfg, args.output_dir, args.batch_size)
    prompting = result["prompting"]
    top = ", ".join(str(r["number"]) for r in result["numbers"][: args.top_k])
    print(f"top entangled numbers: {top}")
    print(
        f"P({args.target}) with 'You love the number N': top {prompting['mean_top']:.4g}, "
        f"matched {prompting['mean_matched']:.4g}, no prompt {prompting['base_no_prompt']:.4g} "
        f"(p = {prompting['p_value']:.3g}); wrote {args.output_dir}"
    )


if __name__ == "__main__":
    run_script(main, RESTARTS)
