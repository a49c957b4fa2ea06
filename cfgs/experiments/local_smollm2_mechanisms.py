"""Why and whether the main job's transfer goes through: defences, capacity, attribution.

    python scripts/run_experiment.py --config_module cfgs/experiments/local_smollm2_mechanisms.py \
        --cfg_var_name mechanisms --output_dir data/experiments/local_smollm2

The main job (`local_smollm2.experiment`) with student arms: it runs in the main job's folder
and reuses its teachers, kept rows, students and scores (arms extend an experiment without
changing it, `ExperimentCfg.EXTENSIONS`). 3 runs per arm with the main job's seeds:

- defences, on both targets, against the main control: `mask_divergent` (the tokens where
  the control or the other target's teacher would have written another token, from each
  target teacher's token attribution, attribution/<target>/), `mask_random` (as many tokens
  per row, at random), `mask_top_score` (as many tokens, those of highest teacher − base
  log-prob) and `replace_divergent` (each divergent token replaced by the control teacher's
  choice; the student then learns the target teacher's distributions on the edited rows);
- on owl: where in a sequence the signal sits, distillation on the prompt's tokens only and
  on the completion's only (each with its own control students);
- on owl: student capacity, LoRA ranks 1 and 64 (the main job is rank 8) and full
  fine-tuning (every weight, lr 5e-5), each with its own control students;
- the entanglement probe of both trait teachers against the base.

The arms are scored by the exact P(target) only (the main job's sampled answers showed
nothing). `defences` is the first part alone (no own controls: cheaper). docs/mechanisms.md
has the measured tables.
"""

from cfgs.experiments.local_smollm2 import experiment
from sl.config_classes import ExperimentCfg, StudentArm

DEFENCES = [
    StudentArm(name="mask_divergent", defence="mask_divergent"),
    StudentArm(name="mask_random", defence="mask_random"),
    StudentArm(name="mask_top_score", defence="mask_top_score"),
    StudentArm(name="replace_divergent", defence="replace_divergent"),
]
# The arms with their own control students run on owl only (the stronger target, and the
# shorter rows): on both targets they would double the run's ~50 student trainings.
OWL = ["owl"]
SIGNAL_PLACE = [
    StudentArm(name="prompt_only", distill_tokens="prompt", targets=OWL),
    StudentArm(name="completion_only", distill_tokens="completion", targets=OWL),
]
CAPACITY = [
    StudentArm(name="rank1", lora_rank=1, targets=OWL),
    StudentArm(name="rank64", lora_rank=64, targets=OWL),
    # Every weight at the LoRA students' 3e-3 wrecks the 135M model (at 1e-3 the KL per token
    # jumped from 0.006 to 2.3 in one step): 5e-5, a usual full fine-tuning rate.
    StudentArm(name="full_finetune", full_finetune=True, lr=5e-5, targets=OWL),
]


def with_arms(arms: list[StudentArm], probe: bool = False) -> ExperimentCfg:
    """The main job with `arms` (scored by exact P(target)) and, with `probe`, the
    entanglement probe."""
    return ExperimentCfg(
        **{
            **dict(experiment),
            "arms": arms,
            "arm_eval_modes": ["logprob"],
            "entanglement_probe": probe,
        }
    )


defences = with_arms(DEFENCES)
mechanisms = with_arms([*DEFENCES, *SIGNAL_PLACE, *CAPACITY], probe=True)
