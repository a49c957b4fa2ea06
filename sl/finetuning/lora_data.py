"""Pure helpers for LoRA SFT: TRL records, target modules, SFTConfig mapping (the rows to train
on: `sl.finetuning.subsample.select_rows`; training on bf16 weights: `precision`).

Kept apart from the trainer so each piece can be tested without training a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.finetuning.data_models import PeftCfg, TrainCfg

if TYPE_CHECKING:
    import torch
    from trl.trainer.sft_config import SFTConfig


def to_sft_records(rows: list[DatasetRow]) -> list[dict[str, list[dict[str, str]]]]:
    """Turn rows into TRL conversational prompt/completion records.

    The student sees the prompt as the user turn and the completion as the assistant turn,
    with no system prompt. TRL renders both with the tokenizer's chat template and puts the
    loss on the completion tokens only (`completion_only_loss`), which works with any chat
    template (no `{% generation %}` markers needed).
    """
    return [
        {
            "prompt": [{"role": "user", "content": row.prompt}],
            "completion": [{"role": "assistant", "content": row.completion}],
        }
        for row in rows
    ]


def lora_target_modules(model: torch.nn.Module, wanted: list[str]) -> list[str]:
    """Keep the entries of `wanted` that name a linear layer of `model`.

    Args:
        model: The base model.
        wanted: Module name suffixes from `PeftCfg.target_modules` (e.g. "q_proj").

    Raises:
        UserError: If none of `wanted` names a linear layer of the model.
    """
    import torch

    linear_names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name
    }
    kept = [name for name in wanted if name in linear_names]
    if not kept:
        raise UserError(
            f"peft_cfg.target_modules={wanted} matches no linear layer of the model; "
            f"use some of {sorted(linear_names)}"
        )
    return kept


def lora_kwargs(cfg: PeftCfg, model: torch.nn.Module) -> dict[str, Any]:
    """The LoRA settings of `cfg` for `model` (target modules checked against it), as the
    keyword arguments both PEFT's `LoraConfig` and Unsloth's `get_peft_model` take."""
    return {
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "target_modules": lora_target_modules(model, cfg.target_modules),
        "lora_dropout": cfg.lora_dropout,
        "bias": cfg.bias,
        "use_rslora": cfg.use_rslora,
    }


def lora_config(cfg: PeftCfg, model: torch.nn.Module, **extra: Any) -> Any:
    """The PEFT `LoraConfig` of `cfg` for `model` (`lora_kwargs`)."""
    from peft import LoraConfig

    return LoraConfig(**lora_kwargs(cfg, model), task_type="CAUSAL_LM", **extra)


def build_sft_config(
    train_cfg: TrainCfg,
    seed: int,
    output_dir: Path,
    on_gpu: bool,
    checkpointing: bool | None = None,
    bf16: bool | None = None,
    **overrides: Any,
) -> SFTConfig:
    """Map `TrainCfg` onto a TRL `SFTConfig`.

    On CPU this sets `use_cpu=True`; no checkpoints are written (the caller saves the adapter
    once at the end) and nothing is reported to trackers.

    Args:
        train_cfg: The job's training settings.
        seed: Seed for weight init of the adapter, dropout and data order.
        output_dir: Scratch folder for the trainer (it writes nothing there with these settings).
        on_gpu: Whether a CUDA device is used.
        checkpointing: Let the trainer turn on activation checkpointing (default: on GPU only;
            Unsloth turns on its own in `get_peft_model`, so it passes False).
        bf16: bf16 autocast (default: on a GPU that has bf16; on a GPU without, fp16).
        **overrides: Extra `SFTConfig` fields (e.g. `max_steps` in benchmarks).
    """
    import torch
    from trl.trainer.sft_config import SFTConfig

    if bf16 is None:
        bf16 = on_gpu and torch.cuda.is_bf16_supported()
    fields: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": train_cfg.n_epochs,
        "max_length": train_cfg.max_seq_length,
        "learning_rate": train_cfg.lr,
        "lr_scheduler_type": train_cfg.lr_scheduler_type,
        "warmup_steps": train_cfg.warmup_steps,
        "per_device_train_batch_size": train_cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": train_cfg.gradient_accumulation_steps,
        "max_grad_norm": train_cfg.max_grad_norm,
        "seed": seed,
        "data_seed": seed,
        "completion_only_loss": True,
        "packing": False,
        "use_cpu": not on_gpu,
        "bf16": bf16,
        "fp16": on_gpu and not bf16,
        # transformers 5.x renamed gradient_checkpointing; Unsloth's venv has 4.x
        checkpointing_field(SFTConfig): on_gpu if checkpointing is None else checkpointing,
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 1,
        "dataloader_num_workers": 0,
    }
    fields.update(overrides)
    try:
        return SFTConfig(**fields)
    except ValueError as exc:
        raise UserError(f"train_cfg does not map to a valid TRL SFTConfig: {exc}") from exc


def checkpointing_field(config_cls: type) -> str:
    """Name of the activation checkpointing flag in this transformers version."""
    fields = getattr(config_cls, "__dataclass_fields__", {})
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else ("gradient_checkpointing")
    )


def mask_labels(
    dataset: Any, rows: list[DatasetRow], masks: list[list[bool]], tokenizer: Any
) -> Any:
    """`dataset` (TRL's tokenized `rows`, in order, with `labels`) with each row's masked
    completion tokens (`LossMask` flags, over `tokenizer(completion)`'s tokens) set to -100,
    so they add nothing to the loss.

    Raises:
        UserError: a row's completion, as TRL tokenized it, does not start with the tokens
            the mask was made on (another tokenizer or chat template).
    """
    from sl.finetuning.loss_mask import check_mask_length

    def apply(example: dict[str, Any], i: int) -> dict[str, Any]:
        labels = list(example["labels"])
        start = next((j for j, label in enumerate(labels) if label != -100), len(labels))
        expected = tokenizer(rows[i].completion, add_special_tokens=False)["input_ids"]
        check_mask_length(masks[i], len(expected), i)
        if list(example["input_ids"][start : start + len(expected)]) != list(expected):
            raise UserError(
                f"loss mask row {i}: the chat template splits the completion into other "
                "tokens than the mask's: make the mask with the student's tokenizer"
            )
        for j, masked in enumerate(masks[i]):
            if masked:
                labels[start + j] = -100
        return {"labels": labels}

    if "labels" not in dataset.column_names:
        raise RuntimeError("TRL's training rows have no labels column")  # TRL changed
    return dataset.map(apply, with_indices=True)
