"""Training a LoRA on bf16 base weights without losing the adapters' small updates."""

from __future__ import annotations

from typing import Any


def has_bf16_base(model: Any) -> bool:
    """Whether `model`'s base weights are bf16 (its input embeddings tell)."""
    import torch

    return model.get_input_embeddings().weight.dtype == torch.bfloat16


def precise_adapters(model: Any) -> Any:
    """Make a PEFT model on bf16 base weights keep its adapters exact; returns the model.

    The trainable weights, the residual stream and each base + adapter sum become fp32, while
    bf16 matmuls (under autocast) still do the frozen base layers' work: summed in bf16, an
    adapter's early, tiny deltas are rounded away (measured in docs/open_models.md). On the
    CPU attention is eager, as bf16's fused attention backward there costs more than all the
    layers' matmuls.
    """
    from peft.tuners.lora import LoraLayer

    to_fp32 = lambda _module, _inputs, output: output.float()  # noqa: E731
    model.get_input_embeddings().register_forward_hook(to_fp32)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.get_base_layer().register_forward_hook(to_fp32)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    if model.device.type == "cpu":
        model.set_attn_implementation("eager")
    return model
