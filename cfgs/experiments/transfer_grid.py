"""Cells of the transfer grid (bench/bench_transfer_grid.py) on the embedded SmolLM2-135M.

    cell_cfg("finetune", "greedy", "distill", prompts=120)

teacher mode {system_prompt, finetune} x decoding {sampled, greedy} x student {sft, distill};
evaluated by exact P(owl) only (cheap); the main job (local_smollm2.py) adds sampled answers.
"""

# Same model, student, filter, evaluation and trait teacher as the main job.
from cfgs.experiments import local_smollm2 as _main_job
from sl.config_classes import DistillCfg, ExperimentCfg, NumsDatasetPromptSet, SampleCfg


def cell_names() -> list[str]:
    """Run order: cells that share a control or a teacher follow the cell that makes it."""
    return [
        f"{mode}/{decoding}/{training}"
        for decoding in ("greedy", "sampled")
        for mode in ("system_prompt", "finetune")
        for training in ("sft", "distill")
    ]


def cell_cfg(
    mode: str, decoding: str, training: str, prompts: int = 120, temperature: float = 1.0
) -> ExperimentCfg:
    """One cell of the grid."""
    t = 0.0 if decoding == "greedy" else temperature
    return ExperimentCfg(
        **{
            **dict(_main_job.experiment_system_prompt),
            "teacher_mode": mode,
            "trait_teacher": _main_job.trait_teacher,
            "sample_cfg": SampleCfg(temperature=t, max_tokens=48),
            "prompt_set": NumsDatasetPromptSet(size=prompts, seed=42),
            "student_training": training,
            "distill": DistillCfg(top_k=None, vocabulary="full"),  # as measured: leaky
            "eval_modes": ["logprob"],
        }
    )
