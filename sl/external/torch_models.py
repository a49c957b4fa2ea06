"""Load an open model (base, or base + LoRA adapter) as a plain torch module, for scoring
and for training loops outside TRL (soft-label distillation, next-token-probability scoring).

    model, tokenizer = load_causal_lm(Model(id="HuggingFaceTB/SmolLM2-135M-Instruct",
                                            type="open_source"))
"""

from __future__ import annotations

from typing import Any

from loguru import logger

from sl.external.chat_template import resolve_model
from sl.llm.data_models import Model


def load_causal_lm(model: Model, dtype: str = "float32") -> tuple[Any, Any]:
    """The model in eval mode (an adapter merged into a fresh copy of the base) and its
    tokenizer (right padding, pad token set).

    Args:
        model: An open model; with `parent_model` set, `id` is a LoRA adapter folder.
        dtype: torch dtype name of the weights (float32 gives exact scores on CPU).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(model)
    logger.info("loading {} (adapter {}) as {}", resolved.base, resolved.adapter, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(resolved.base))
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = AutoModelForCausalLM.from_pretrained(str(resolved.base), dtype=getattr(torch, dtype))
    if resolved.adapter is not None:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, str(resolved.adapter)).merge_and_unload()
    return lm.eval(), tokenizer


def chat_prompt_ids(tokenizer: Any, user: str, system: str | None = None) -> list[int]:
    """Token ids of a one-turn chat up to the start of the assistant's answer."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def right_pad(seqs: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors of right-padded sequences."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
