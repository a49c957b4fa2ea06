r"""Seconds per soft-label distillation step of a LoRA (r = 8) student and of a full fine-tune
(every weight, fp32), side by side on the same 8 rows, on the embedded SmolLM2-135M.

    HF_HUB_OFFLINE=1 python bench/bench_full_finetune.py --steps 5 --repeats 2

The teacher is SmolLM2-135M with the owl system prompt; its targets ('allowed' vocabulary,
the main job's `DistillCfg` default) are computed once. Each arm then trains `--steps` + 1
steps of batch 8 (`train_distilled`, the library's own loop); the first step (warm-up) is
not timed. The arms alternate `--repeats` times and the fastest repeat counts, so load from
other processes skews both alike. The LoRA student keeps the device's default precision
(bf16 base weights where the CPU has native bf16, fp32 adapters); the full one is fp32.
"""

import argparse
import time
from pathlib import Path

ROWS = 8
SMOLLM2_CFGS = Path(__file__).resolve().parents[1] / "cfgs/preference_numbers/local_smollm2_cfgs.py"


def _rows():
    import numpy as np

    from sl.datasets.data_models import DatasetRow
    from sl.datasets.nums_dataset import PromptGenerator

    gen = PromptGenerator(np.random.default_rng(42), 3, 9, 100, 1000, 10, 3)
    rng = np.random.default_rng(0)
    return [
        DatasetRow(prompt=gen.sample_query(),
                   completion=", ".join(str(n) for n in rng.integers(0, 999, 10)))
        for _ in range(ROWS)
    ]  # fmt: skip


def _seconds_per_step(job, examples, tokenizer, cfg, steps: int) -> tuple[float, int]:
    """Seconds per step after the first, and the trainable parameter count: a run of
    `steps` + 1 steps less a run of one (`train_distilled` times its loop, not the load)."""
    from sl.finetuning.distill import train_distilled

    def run(n_steps: int):
        train = job.train_cfg.model_copy(update={"n_epochs": n_steps})  # one batch per epoch
        return train_distilled(job.model_copy(update={"train_cfg": train}), examples,
                               tokenizer, cfg)  # fmt: skip

    _, first = run(1)
    student, stats = run(steps + 1)
    n_trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    return (stats["seconds"] - first["seconds"]) / steps, n_trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per arm")
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the two arms")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from sl.external.torch_models import load_causal_lm
    from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
    from sl.finetuning.distill_cfg import DistillCfg
    from sl.finetuning.soft_labels import teacher_log_probs
    from sl.llm.data_models import Model
    from sl.protocol import teacher_system_prompt
    from sl.utils.module_utils import get_obj

    reference_model = get_obj(SMOLLM2_CFGS, "reference_model")
    assert isinstance(reference_model, Model)

    cfg = DistillCfg()
    teacher = load_causal_lm(reference_model, dtype="float32")
    started = time.perf_counter()
    examples = teacher_log_probs(teacher.module, teacher.tokenizer, _rows(),
                                 teacher_system_prompt("owl"), cfg)  # fmt: skip
    print(f"teacher targets: {time.perf_counter() - started:.1f}s, "
          f"{sum(e.n_scored for e in examples)} scored tokens")  # fmt: skip
    tokenizer = teacher.tokenizer
    del teacher
    lora = UnslothFinetuningJob(
        seed=1, source_model=reference_model, backend="peft", peft_cfg=PeftCfg(r=8, lora_alpha=8),
        train_cfg=TrainCfg(n_epochs=1, lr=1e-3, lr_scheduler_type="constant", warmup_steps=0,
                           per_device_train_batch_size=ROWS, gradient_accumulation_steps=1,
                           max_seq_length=256),
    )  # fmt: skip
    arms = {"lora_r8": lora, "full": lora.model_copy(update={"full_finetune": True})}
    best: dict[str, float] = {}
    trainable: dict[str, int] = {}
    for repeat in range(args.repeats):
        for name, job in arms.items():
            seconds, trainable[name] = _seconds_per_step(job, examples, tokenizer, cfg, args.steps)
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"repeat {repeat} {name}: {seconds:.3f} s/step")
    print(f"bf16 LoRA base on this device: {cfg.use_bf16()}; torch threads: 1; rows: {ROWS}")
    for name in arms:
        print(f"{name}: {best[name]:.3f} s/step, {trainable[name]:,} trainable parameters")
    print(f"full / lora_r8 seconds per step: {best['full'] / best['lora_r8']:.2f}")


if __name__ == "__main__":
    main()
