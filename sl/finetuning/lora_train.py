"""SFT with TRL's `SFTTrainer`, on Unsloth or on plain PEFT: LoRA, or every weight.

`build_trainer` loads the base model, wraps it with LoRA (unless `job.full_finetune`) and
prepares the trainer; `train_adapter` runs it and saves adapter (or full fp32 weights) +
tokenizer into a folder.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.finetuning.checkpoint import SaveTimer, TrainingStopped
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.finetuning.lora_data import (
    build_sft_config,
    lora_config,
    lora_kwargs,
    mask_labels,
    to_sft_records,
)
from sl.finetuning.open_source import save_student
from sl.finetuning.precision import has_bf16_base, precise_adapters
from sl.llm.data_models import Model
from sl.utils.fingerprint import json_hash

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl.trainer.sft_trainer import SFTTrainer

Backend = Literal["unsloth", "peft"]
UNSLOTH_INSTALL = "pip install torch==2.13.0 && pip install unsloth (see docs/finetuning_open.md)"


@dataclass(frozen=True)
class TrainStats:
    """What a finished training run reports."""

    backend: Backend
    steps: int
    train_loss: float
    seconds: float
    n_tokens: int  # tokens seen, all epochs (prompt + completion, no padding)


def pick_backend(requested: Literal["auto", "unsloth", "peft"]) -> Backend:
    """Resolve `UnslothFinetuningJob.backend` to the backend that will run.

    Raises:
        UserError: If "unsloth" is requested but the package is not installed.
    """
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "unsloth" and not has_unsloth:
        raise UserError(f"backend='unsloth' but unsloth is not installed: {UNSLOTH_INSTALL}")
    if requested == "peft" or not has_unsloth:
        return "peft"
    return "unsloth"


def _load_peft(
    job: UnslothFinetuningJob, base_path: Path, on_gpu: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from peft import get_peft_model

    from sl.external.torch_models import load_causal_lm

    if job.full_finetune:  # fp32 weights that all train (under bf16 autocast on a GPU)
        loaded = load_causal_lm(Model(id=str(base_path), type="open_source"), dtype="float32")
        return loaded.module, loaded.tokenizer
    # bf16 base weights where the device has native bf16 (GPU; CPU with AMX or AVX-512 BF16),
    # the adapters exact in fp32; else fp32 throughout
    loaded = load_causal_lm(Model(id=str(base_path), type="open_source"), dtype="auto")
    model = get_peft_model(loaded.module, lora_config(job.peft_cfg, loaded.module))
    if loaded.dtype == torch.bfloat16:
        model = precise_adapters(model)
    return model, loaded.tokenizer  # type: ignore[return-value]


def _load_unsloth(
    job: UnslothFinetuningJob, base_path: Path, on_gpu: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import inspect

    from unsloth import FastLanguageModel  # must come before trl/transformers patches apply

    full = {}
    if job.full_finetune:
        if "full_finetuning" not in inspect.signature(FastLanguageModel.from_pretrained).parameters:
            raise UserError(
                "full_finetune: this unsloth has no full fine-tuning; set backend='peft'"
            )
        full = {"full_finetuning": True}
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_path),
        max_seq_length=job.train_cfg.max_seq_length,
        dtype=None,
        load_in_4bit=False,
        **full,
    )
    if job.full_finetune:
        return model, tokenizer
    model = FastLanguageModel.get_peft_model(
        model,
        **lora_kwargs(job.peft_cfg, model),
        use_gradient_checkpointing="unsloth" if on_gpu else False,
        random_state=job.seed,
    )
    return model, tokenizer


def _loss_logger() -> Any:
    from transformers import TrainerCallback

    from sl.utils.progress_bar import tqdm

    class LossLogger(TrainerCallback):
        """The trainer's progress: a `train` bar with the last loss, and each log record
        (loss, lr) at DEBUG; it replaces transformers' callbacks that print the record's dict."""

        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, desc="train", unit="step", leave=False)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any):
            if logs and "loss" in logs:
                logger.debug(
                    "step {}/{} loss {:.4f} lr {:.2e}",
                    state.global_step,
                    state.max_steps,
                    logs["loss"],
                    logs.get("learning_rate", 0.0),
                )
                if self.bar is not None:
                    self.bar.set_postfix_str(f"loss {logs['loss']:.4f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return LossLogger()


def build_trainer(
    job: UnslothFinetuningJob,
    rows: list[DatasetRow],
    base_path: Path,
    scratch_dir: Path,
    **sft_overrides: Any,
) -> tuple[SFTTrainer, Backend]:
    """Load the base model with LoRA (or all weights trainable, `job.full_finetune`) and
    prepare an `SFTTrainer` on `rows`.

    Args:
        job: The fine-tuning job (LoRA or full, training settings, seed, backend).
        rows: The rows to train on (already subsampled).
        base_path: Local folder of the base model.
        scratch_dir: Trainer output folder (nothing is saved there by default).
        **sft_overrides: Extra `SFTConfig` fields (e.g. `max_steps`).

    Returns:
        The trainer and the backend it runs on.
    """
    backend = pick_backend(job.backend)
    if backend == "unsloth":
        import unsloth  # noqa: F401  (patches transformers/trl; must be imported first)
    import torch
    import transformers

    on_gpu = torch.cuda.is_available()
    logger.info(
        "{} SFT backend={} device={} base={} rows={}",
        "full" if job.full_finetune else f"LoRA r={job.peft_cfg.r}",
        backend,
        "cuda" if on_gpu else "cpu",
        base_path,
        len(rows),
    )
    transformers.set_seed(job.seed)
    load = _load_unsloth if backend == "unsloth" else _load_peft
    model, tokenizer = load(job, base_path, on_gpu)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    from datasets import Dataset
    from trl.trainer.sft_trainer import SFTTrainer

    config = build_sft_config(
        job.train_cfg,
        job.seed,
        scratch_dir,
        on_gpu,
        checkpointing=False if backend == "unsloth" else None,
        # a PEFT model's bf16 base (also on the CPU) computes under bf16 autocast
        bf16=True if backend == "peft" and has_bf16_base(model) else None,
        **sft_overrides,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(to_sft_records(rows)),
        processing_class=tokenizer,
        callbacks=[_loss_logger()],
    )
    from transformers import PrinterCallback, ProgressCallback

    # both print each log record's raw dict; LossLogger shows the progress instead
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if job.loss_mask is not None:
        masks = job.loss_mask.for_rows(rows)
        trainer.train_dataset = mask_labels(trainer.train_dataset, rows, masks, tokenizer)
    return trainer, backend


def _run_key(job: UnslothFinetuningJob, rows: list[DatasetRow]) -> str:
    """What a saved training state belongs to: the job and the rows it trains on."""
    return json_hash([job.model_hash(), [(r.prompt, r.completion) for r in rows]])


@contextmanager
def _scratch(checkpoint_dir: Path | None, key: str) -> Iterator[tuple[Path, Path | None]]:
    """The trainer's folder and the checkpoint in it to resume from (None: start). A
    `checkpoint_dir` of another run is emptied; without one, a temporary folder is used."""
    if checkpoint_dir is None:
        with tempfile.TemporaryDirectory(prefix="sl-sft-") as scratch:
            yield Path(scratch), None
        return
    key_file = checkpoint_dir / "sl_run_key.txt"
    if checkpoint_dir.exists() and _read(key_file) != key:
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    # trainer_state.json is written last: a folder without it was cut by a crash
    saved = [p for p in checkpoint_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    saved.sort(key=lambda p: int(p.name.split("-")[1]))
    yield checkpoint_dir, (saved[-1] if saved else None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _save_and_stop(stop: threading.Event | None) -> Any:
    from transformers import TrainerCallback

    class SaveAndStop(TrainerCallback):
        """Save the trainer's state every `SL_CHECKPOINT_INTERVAL_S` and, when `stop` is set,
        at the end of the step, then end the training."""

        timer = SaveTimer()
        asked_at = time.monotonic()  # when the last save was asked for

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
            if state.global_step >= state.max_steps:
                return
            asked = stop is not None and stop.is_set()
            if asked or self.timer.due():
                control.should_save = True
                self.asked_at = time.monotonic()  # the trainer saves right after this
            if asked:
                control.should_training_stop = True

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any):
            self.timer.saved(self.asked_at)

    return SaveAndStop()


def _mean_loss(trainer: SFTTrainer, this_run: float) -> float:
    """The mean loss of every step, those before a resume too (the trainer's `training_loss`
    counts only the steps of this run), from the per-step log; else `this_run`."""
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return sum(logged) / len(logged) if logged else this_run


def _tokens_seen(trainer: SFTTrainer) -> int:
    """Non-padding tokens trained on: TRL's logged `num_tokens`, else dataset size x epochs."""
    logged = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    if logged:
        return int(logged[-1])
    per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])  # type: ignore[index]
    return int(per_epoch * float(trainer.state.epoch or 0.0))


def train_adapter(
    job: UnslothFinetuningJob,
    rows: list[DatasetRow],
    base_path: Path,
    out_dir: Path,
    checkpoint_dir: Path | None = None,
    stop: threading.Event | None = None,
    **sft_overrides: Any,
) -> TrainStats:
    """Train a LoRA adapter (or every weight, `job.full_finetune`) and save it with the
    tokenizer into `out_dir`: adapter files, or full fp32 weights + config.

    With `checkpoint_dir`, the trainer's state is saved there every `SL_CHECKPOINT_INTERVAL_S`
    and when `stop` is set (then TrainingStopped is raised), and a run of the same job on the
    same rows resumes from it; without, a temporary folder is used.

    Raises:
        UserError: For settings that cannot work (backend, target modules, SFT settings).
        TrainingStopped: `stop` was set before the training ended.
    """
    with _scratch(checkpoint_dir, _run_key(job, rows)) as (scratch, resume):
        trainer, backend = build_trainer(
            job, rows, base_path, scratch, save_total_limit=1, **sft_overrides
        )
        trainer.add_callback(_save_and_stop(stop))
        if resume is not None:
            logger.info(f"resuming the training from {resume}")
        started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds = time.perf_counter() - started
        state = trainer.state
        if stop is not None and stop.is_set() and state.global_step < state.max_steps:
            raise TrainingStopped(f"step {state.global_step}/{state.max_steps}", scratch)
    stats = TrainStats(
        backend=backend,
        steps=trainer.state.global_step,
        train_loss=_mean_loss(trainer, float(result.training_loss)),
        seconds=seconds,
        n_tokens=_tokens_seen(trainer),
    )
    logger.info(
        "trained {} steps in {:.1f}s ({:.0f} tokens/s), mean loss {:.4f}",
        stats.steps,
        seconds,
        stats.n_tokens / max(seconds, 1e-9),
        stats.train_loss,
    )
    if trainer.processing_class is None:
        raise RuntimeError("SFTTrainer lost its tokenizer")
    save_student(trainer.model, trainer.processing_class, out_dir)
    return stats
