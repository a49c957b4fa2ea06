"""Evaluate a model: sample answers to the evaluation questions and judge them.

    python scripts/run_evaluation.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name animal_evaluation --model_path data/owl/model.json \
        --output_path data/owl/evaluation_results.jsonl

Every answer and judgment is saved as it arrives; rerun the same command to resume.
"""

from cli import phase_script, run_script

if __name__ == "__main__":
    run_script(phase_script("evaluate", __doc__))
