"""Generate and filter a teacher dataset on Modal (paths are on the volume, default
subliminal-learning-data).

    python scripts/modal_generate_dataset.py --config_module cfgs/preference_numbers/cfgs.py \
        --cfg_var_name owl_dataset_cfg --raw_dataset_path owl/raw.jsonl \
        --filtered_dataset_path owl/filtered.jsonl

Without the path flags the files go to a folder named after the variable
(owl_dataset_cfg/raw_dataset.jsonl and owl_dataset_cfg/filtered_dataset.jsonl); the original
scripts' --raw_dataset_filename/--filtered_dataset_filename put them under datasets/.
OpenAI teachers run on the CPU image, open-model teachers (vLLM) on the GPU image
(SL_MODAL_GPU). Rerun the same command to resume. See docs/modal.md.
"""

from cli import modal_phase_script, run_script

if __name__ == "__main__":
    run_script(modal_phase_script("generate_dataset", __doc__))
