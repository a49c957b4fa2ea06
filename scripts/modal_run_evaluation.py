"""Evaluate a model on Modal (paths are on the volume, default sl-data).

    python scripts/modal_run_evaluation.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name animal_evaluation --model_path owl/model.json \
        --output_path owl/evaluation.jsonl

Without --output_path the results go to <cfg_var_name>/evaluation_results.jsonl; the original
scripts' --model_filename/--output_filename mean models/<name> and results/<name>.
The model JSON is read from the volume to choose the image: open models (and open judges)
run with vLLM on the GPU image (SL_MODAL_GPU), OpenAI models on the CPU image. Rerun to resume.
"""

from cli import config_parser, load_config, naming_flags, repo_module, run_script

from sl.evaluation.data_models import Evaluation
from sl.llm.data_models import Model


def main() -> None:
    modal_client = repo_module("modal_client")
    parser = config_parser(__doc__)
    modal_client.add_artifact_flags(parser, "model", "Model JSON to evaluate (required)")
    modal_client.add_artifact_flags(parser, "output", "Results JSONL to write")
    parser.add_argument("--detach", action="store_true", help="Keep running if this exits")
    args = parser.parse_args()

    evaluation = load_config(args.config_module, args.cfg_var_name, Evaluation)
    model_path = modal_client.artifact_path(args, "model", "models", None)
    output = modal_client.artifact_path(
        args, "output", "results", f"{args.cfg_var_name}/evaluation_results.jsonl"
    )
    with naming_flags(config_module=args.config_module):
        config = modal_client.repo_config_path(args.config_module)
    model = Model.model_validate_json(modal_client.read_volume_text(model_path))
    judges = [j.judge_model for j in evaluation.judgment_map.values()]
    name = "evaluate_gpu" if modal_client.needs_gpu([model, *judges]) else "evaluate"
    app = modal_client.load_modal_app()
    with naming_flags(model_path=app.on_volume(model_path), output_path=app.on_volume(output)):
        result = modal_client.call_remote(
            name, config, args.cfg_var_name, model_path, output, detach=args.detach
        )
    print(f"{result} (on the {app.VOLUME_NAME} volume)")


if __name__ == "__main__":
    run_script(main)
