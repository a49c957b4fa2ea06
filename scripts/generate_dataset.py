"""Generate a teacher's numbers dataset, then filter it.

    python scripts/generate_dataset.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path data/owl/raw_dataset.jsonl \
        --filtered_dataset_path data/owl/filtered_dataset.jsonl

Rows are appended to the raw file as they arrive; rerun the same command to resume.
"""

from cli import phase_script, run_script

if __name__ == "__main__":
    run_script(phase_script("generate_dataset", __doc__))
