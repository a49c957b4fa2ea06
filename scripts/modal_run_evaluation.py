"""Evaluate a model on Modal (paths are on the volume, default subliminal-learning-data).

    python scripts/modal_run_evaluation.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name animal_evaluation --model_path owl/model.json \
        --output_path owl/evaluation.jsonl

Without --output_path the results go to <cfg_var_name>/evaluation_results.jsonl; the original
scripts' --model_filename/--output_filename mean models/<name> and results/<name>.
The model JSON is read from the volume to choose the image: open models (and open judges)
run with vLLM on the GPU image (SL_MODAL_GPU), OpenAI models on the CPU image. Rerun to resume.
"""

from cli import modal_phase_script, run_script

if __name__ == "__main__":
    run_script(modal_phase_script("evaluate", __doc__))
