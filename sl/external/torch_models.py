"""The one loader of open-model weights as torch modules, with one device and dtype policy.

    lm = load_causal_lm(Model(id="HuggingFaceTB/SmolLM2-135M-Instruct", type="open_source"))
    lm.module, lm.tokenizer, lm.device, lm.dtype

Used by the transformers driver (generation), LoRA SFT, soft-label distillation and exact
next-token-probability scoring. Device `auto` is the GPU when torch sees one, else the CPU
(`SL_DEVICE` overrides it). Dtype `auto` is bfloat16 where the hardware computes it natively
(CUDA GPUs with bf16; CPUs with AVX-512 BF16 or AMX) and float32 elsewhere. Shared-prefix
prefill (`prefill`)
lets scoring and sampling run a batch's common prompt prefix once and reuse its KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loguru import logger

from sl.config import check_dtype, get_settings
from sl.errors import UserError
from sl.external.model_resolution import resolve_model
from sl.llm.data_models import Model


def resolve_device(device: str | None = None) -> str:
    """`auto` (or None: `SL_DEVICE`, default auto) → "cuda" when torch sees a GPU, else "cpu".

    Raises:
        UserError: A device this machine lacks, naming the ones it has.
    """
    import torch

    name = device or get_settings().device
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    available = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n_gpus)] if n_gpus else [])
    if name == "auto":
        return "cuda" if n_gpus else "cpu"
    if name not in available:
        raise UserError(
            f"device {name!r} is not available on this machine: use one of "
            f"{['auto', *available]} (set with SL_DEVICE)"
        )
    return name


def native_bf16(device: str) -> bool:
    """Whether `device` computes bfloat16 matmuls in hardware (GPU bf16, CPU AMX/AVX-512 BF16)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str, device: str) -> Any:
    """The torch dtype for a name; `auto` = bfloat16 where `device` has native bf16, else fp32.

    Raises:
        UserError: An unknown name, or bfloat16/float16 on a GPU that lacks it.
    """
    import torch

    if check_dtype(dtype) == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    if dtype == "bfloat16" and device.startswith("cuda") and not native_bf16(device):
        raise UserError(f"{device} has no bfloat16 support: use dtype float16 or float32")
    return getattr(torch, dtype)


@dataclass
class LoadedLM:
    """A causal LM on its device, its tokenizer (pad token set) and the resolved placement."""

    module: Any
    tokenizer: Any
    device: str
    dtype: Any


def load_causal_lm(
    model: Model, device: str | None = None, dtype: str = "auto", merge_adapter: bool = True
) -> LoadedLM:
    """Load an open model (base, full fine-tune, or base + LoRA adapter) in eval mode on
    `device`.

    Args:
        model: An open model; with `parent_model` set, `id` is a LoRA adapter folder or a
            full fine-tune's weights (loaded like a base, `resolve_model`).
        device: "auto", "cpu", "cuda" or "cuda:N" (None: `SL_DEVICE`, default auto).
        dtype: Weights dtype name; "auto" = bfloat16 where native, else float32.
        merge_adapter: Merge the adapter into the weights (False keeps a `PeftModel`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(model)
    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, where)
    logger.debug(
        "loading {} (adapter {}) on {} as {}", resolved.base, resolved.adapter, where, torch_dtype
    )
    tokenizer = AutoTokenizer.from_pretrained(str(resolved.base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm: Any = AutoModelForCausalLM.from_pretrained(str(resolved.base), dtype=torch_dtype)
    lm.to(where)
    if resolved.adapter is not None:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, str(resolved.adapter))
        lm.to(where)
        if merge_adapter:
            lm = lm.merge_and_unload()
    return LoadedLM(module=lm.eval(), tokenizer=tokenizer, device=where, dtype=torch_dtype)


def chat_prompt_ids(tokenizer: Any, user: str, system: str | None = None) -> list[int]:
    """Token ids of a one-turn chat up to the start of the assistant's answer."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def right_pad(seqs: list[list[int]], pad_id: int, device: str = "cpu") -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors of right-padded sequences."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@dataclass
class Prefill:
    """A batch of prompts run once: `input_ids`/`attention_mask` are the prompts laid out as
    [shared prefix][left padding][own suffix] (row i repeated `expand` times, consecutively),
    `cache` holds the keys/values of every position but the last, and `lengths` the real
    token count of each row (the next position id)."""

    input_ids: Any
    attention_mask: Any
    cache: Any
    lengths: Any


def prefill(lm: Any, prompts: list[list[int]], pad_id: int, expand: int = 1) -> Prefill:
    """Run a batch of prompts through `lm` except for each one's last token, computing the
    prefix they all share only once, then repeat each row's cache `expand` times.

    The next forward (or `generate`) takes the returned ids and mask; it has to compute only
    the last prompt token, whose position id is `lengths - 1`.
    """
    import torch

    device = lm.device
    shared = _shared_prefix_len(prompts)
    suffixes = [p[shared:] for p in prompts]
    width = max(len(s) for s in suffixes)
    n = len(prompts)
    ids = torch.full((n, shared + width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, shared + width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :shared] = torch.tensor(p[:shared])
        ids[i, shared + width - len(suffixes[i]) :] = torch.tensor(suffixes[i])
        mask[i, :shared] = 1
        mask[i, shared + width - len(suffixes[i]) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # The decoder only: no logits are needed, and on the CPU the output layer on a batch of
    # last positions ([n, 1, d]) copied its weight n times (4 s of a 10 s evaluation).
    decoder = lm.get_decoder()
    with torch.inference_mode():
        cache = None
        if shared:
            cache = output_cache(decoder(input_ids=ids[:1, :shared], use_cache=True))
            cache.batch_repeat_interleave(n)
        if ids.shape[1] - 1 > shared:
            out = decoder(
                input_ids=ids[:, shared:-1],
                attention_mask=mask[:, :-1],
                position_ids=positions[:, shared:-1],
                use_cache=True,
                **with_cache(lm, cache),
            )
            cache = output_cache(out)
        if expand > 1 and cache is not None:
            cache.batch_repeat_interleave(expand)
    lengths = mask.sum(-1)
    if expand > 1:
        ids, mask = ids.repeat_interleave(expand, 0), mask.repeat_interleave(expand, 0)
        lengths = lengths.repeat_interleave(expand, 0)
    return Prefill(input_ids=ids, attention_mask=mask, cache=cache, lengths=lengths)


def with_cache(lm: Any, cache: Any) -> dict[str, Any]:
    """The keyword that passes a KV cache to `lm`'s forward: `cache` (transformers >= 5.20)
    or `past_key_values` (earlier)."""
    import inspect

    params = inspect.signature(lm.get_decoder().forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


def output_cache(out: Any) -> Any:
    """The KV cache a forward returned, under either name."""
    cache = out.get("cache")
    return cache if cache is not None else out.get("past_key_values")


def _shared_prefix_len(prompts: list[list[int]]) -> int:
    """Length of the common token prefix, leaving every prompt at least its last token."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n
