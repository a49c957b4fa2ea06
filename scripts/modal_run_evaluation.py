"""Evaluate a model on Modal (paths are on the volume, default sl-data).

    python scripts/modal_run_evaluation.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name animal_evaluation --model_path owl/model.json \
        --output_path owl/evaluation.jsonl

Without --output_path the results go to <cfg_var_name>/evaluation_results.jsonl; the original
scripts' --model_filename/--output_filename mean models/<name> and results/<name>.
The model JSON is read from the volume to choose the image: open models (and open judges)
run with vLLM on the GPU image (SL_MODAL_GPU), OpenAI models on the CPU image. Rerun to resume.
"""

from cli import call_modal_phase, modal_phase_args, repo_module, run_script

from sl.evaluation.data_models import Evaluation
from sl.llm.data_models import Model


def main() -> None:
    modal_client = repo_module("modal_client")
    args, evaluation = modal_phase_args(
        __doc__,
        Evaluation,
        {"model": "Model JSON to evaluate (required)", "output": "Results JSONL to write"},
    )
    model_path = modal_client.artifact_path(args, "model", "models", None)
    output = modal_client.artifact_path(
        args, "output", "results", f"{args.cfg_var_name}/evaluation_results.jsonl"
    )
    model = Model.model_validate_json(modal_client.read_volume_text(model_path))
    judges = [j.judge_model for j in evaluation.judgment_map.values()]
    gpu = modal_client.needs_gpu([model, *judges])
    result = call_modal_phase("evaluate", gpu, args, model_path=model_path, output_path=output)
    print(f"{result} (on the {modal_client.load_modal_app().VOLUME_NAME} volume)")


if __name__ == "__main__":
    run_script(main)
