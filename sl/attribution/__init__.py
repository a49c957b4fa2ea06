r"""Token attribution: through which completion tokens a teacher's trait could pass.

    python scripts/analyze_tokens.py --dataset filtered.jsonl --teacher owl/model.json \
        --counterfactual eagle/model.json --base HuggingFaceTB/SmolLM2-135M-Instruct \
        --output_dir data/attribution/owl

Each row's prompt + completion is teacher-forced through the teacher, the base and every
counterfactual teacher (each in its own context: its system prompt), batched, and every
completion token gets its log-prob under each model, each counterfactual's greedy token and
`divergent` (some counterfactual would have written another token). `data_models` holds the
output rows, `models` the model arguments and their checks, `scoring` the batched forward
passes, `summary` the run's summary and `services.run_token_attribution` the guarded run.
"""
