"""Open models with plain transformers `generate` (CPU or one GPU, no vLLM needed).

Chats are grouped by sampling settings and generated in left-padded batches with the KV
cache. A LoRA model (`Model.parent_model` set) loads its adapter with PEFT onto the cached base;
several adapters share one base. Models stay loaded for the life of the process.
Batch size: SL_TRANSFORMERS_BATCH_SIZE (sequences per `generate`, default 32). Weights dtype:
SL_TRANSFORMERS_DTYPE = auto (bfloat16 on GPU and on CPUs with native bf16, else float32),
float32, bfloat16 or float16.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from loguru import logger
from tqdm import tqdm

from sl.config import env_int
from sl.errors import UserError
from sl.external.chat_template import (
    DEFAULT_MAX_TOKENS,
    ResolvedModel,
    resolve_model,
    stop_reason,
    to_messages,
    truncate_at_stop,
)
from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg
from sl.llm.driver import OnResult

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _torch_dtype(name: str, device: str) -> Any:
    """The torch dtype for a name; `auto` = bfloat16 where the hardware does it natively."""
    import torch

    if name == "auto":
        native_bf16 = device == "cuda"
        if device == "cpu":
            try:
                native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
            except (AttributeError, RuntimeError):
                native_bf16 = False
        name = "bfloat16" if native_bf16 else "float32"
    return getattr(torch, name)


class _Loaded:
    """A base model, its tokenizer and the PEFT wrapper once an adapter was loaded."""

    def __init__(self, base_path: str, dtype_name: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = _torch_dtype(dtype_name, self.device)
        logger.info("loading {} on {} ({})", base_path, self.device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(base_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
        self.model.to(self.device).eval()
        self.peft: Any = None
        self.adapters: dict[str, str] = {}  # adapter folder -> adapter name

    def select(self, adapter: str | None) -> tuple[Any, Any]:
        """The module to call `generate` on and a context manager (disables adapters for base)."""
        if adapter is None:
            return self.model, (self.peft.disable_adapter() if self.peft else nullcontext())
        if adapter not in self.adapters:
            from peft import PeftModel

            name = f"a{len(self.adapters)}"
            logger.info("loading LoRA adapter {}", adapter)
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, adapter, adapter_name=name)
                self.peft.to(self.device).eval()
            else:
                self.peft.load_adapter(adapter, adapter_name=name)
            self.adapters[adapter] = name
        self.peft.set_adapter(self.adapters[adapter])
        return self.peft, nullcontext()


class TransformersDriver:
    """A `Driver` running Hugging Face models in this process."""

    def __init__(self, batch_size: int = 32, dtype: str = "auto"):
        if dtype not in DTYPES:
            raise UserError(f"transformers dtype {dtype!r} is not valid: use one of {DTYPES}")
        self.batch_size = batch_size
        self.dtype = dtype
        self._models: dict[str, _Loaded] = {}
        self._lock = threading.Lock()  # one generate at a time per process

    async def batch_sample(
        self,
        model: Model,
        chats: Sequence[Chat],
        sample_cfgs: Sequence[SampleCfg],
        on_result: OnResult | None = None,
    ) -> list[list[LLMResponse]]:
        """Sample `cfg.n` completions per chat in a worker thread (the event loop stays free).

        `on_result` is called from that thread, per chat, as each batch finishes.
        """
        resolved = resolve_model(model)  # user errors surface before any loading
        return await asyncio.to_thread(
            self._sample_all, model, resolved, list(chats), list(sample_cfgs), on_result
        )

    def _sample_all(
        self,
        model: Model,
        resolved: ResolvedModel,
        chats: list[Chat],
        cfgs: list[SampleCfg],
        on_result: OnResult | None,
    ) -> list[list[LLMResponse]]:
        with self._lock:
            key = str(resolved.base)
            if key not in self._models:
                self._models[key] = _Loaded(key, self.dtype)
            loaded = self._models[key]
            results: list[list[LLMResponse]] = [[] for _ in chats]
            groups: dict[str, list[int]] = {}  # by config hash (a list field blocks hash())
            for i, cfg in enumerate(cfgs):
                groups.setdefault(cfg.model_hash(), []).append(i)
            adapter = str(resolved.adapter) if resolved.adapter else None
            gen_model, ctx = loaded.select(adapter)
            with ctx, tqdm(total=len(chats), desc=f"generate {model.id}", unit="chat") as bar:
                for indices in groups.values():
                    cfg = cfgs[indices[0]]
                    indices.sort(key=lambda i: _chat_len(chats[i]))  # less padding per batch
                    size = max(1, self.batch_size // cfg.n)
                    for start in range(0, len(indices), size):
                        batch = indices[start : start + size]
                        outs = _generate(loaded, gen_model, [chats[i] for i in batch], cfg)
                        for i, responses in zip(batch, outs, strict=True):
                            responses = [
                                r.model_copy(update={"model_id": model.id}) for r in responses
                            ]
                            results[i] = responses
                            if on_result is not None:
                                on_result(i, responses)
                        bar.update(len(batch))
            return results


def _chat_len(chat: Chat) -> int:
    return sum(len(m.content) for m in chat.messages)


def _generate(
    loaded: _Loaded, gen_model: Any, chats: list[Chat], cfg: SampleCfg
) -> list[list[LLMResponse]]:
    """One `generate` call for chats sharing a sampling config; n responses per chat."""
    import torch

    tok = loaded.tokenizer
    texts = [
        tok.apply_chat_template(to_messages(c), tokenize=False, add_generation_prompt=True)
        for c in chats
    ]
    inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    inputs = inputs.to(loaded.device)
    greedy = cfg.temperature == 0
    max_new = cfg.max_tokens or DEFAULT_MAX_TOKENS
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new,
        "do_sample": not greedy,
        "pad_token_id": tok.pad_token_id,
        "use_cache": True,
    }
    if not greedy:
        kwargs.update(
            temperature=cfg.temperature,
            num_return_sequences=cfg.n,
            top_k=0,
            top_p=cfg.top_p if cfg.top_p is not None else 1.0,
            repetition_penalty=1.0,
        )  # ignore a model's own sampling defaults
    if cfg.stop:
        kwargs.update(stop_strings=cfg.stop, tokenizer=tok)
    want_logprobs = cfg.logprobs or bool(cfg.top_logprobs)
    if want_logprobs:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    with torch.inference_mode():
        out = gen_model.generate(**inputs, **kwargs)
    sequences = out.sequences if want_logprobs else out
    new_tokens = sequences[:, inputs["input_ids"].shape[1] :].tolist()
    logprobs = None
    if want_logprobs:  # raw model distribution, before temperature / top-p
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)
    eos_ids = _eos_ids(loaded, gen_model)
    per_chat = 1 if greedy else cfg.n
    responses: list[list[LLMResponse]] = []
    for c in range(len(chats)):
        group = []
        for j in range(per_chat):
            row = c * per_chat + j
            ids = new_tokens[row]
            ended = next((k for k, t in enumerate(ids) if t in eos_ids), None)
            kept = ids if ended is None else ids[:ended]
            text, stopped = truncate_at_stop(tok.decode(kept, skip_special_tokens=True), cfg.stop)
            finished = ended is not None or stopped or len(ids) < max_new
            lp = None
            if logprobs is not None:
                n_tok = len(kept) if ended is None else ended + 1
                lp = _token_logprobs(tok, logprobs[row, :n_tok], ids[:n_tok], cfg.top_logprobs)
            group.append(
                LLMResponse(
                    model_id="", completion=text, stop_reason=stop_reason(finished), logprobs=lp
                )
            )
        responses.append(group * cfg.n if greedy else group)
    return responses


def _eos_ids(loaded: _Loaded, gen_model: Any) -> set[int]:
    eos = gen_model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return ids


def _token_logprobs(
    tok: Any, logprobs: Any, ids: list[int], top: int | None
) -> list[dict[str, float]]:
    """Per generated token: {token text: logprob} for the chosen token and the top-k others."""
    k = max(top or 0, 0)
    result = []
    for step, chosen in enumerate(ids):
        entry = {tok.decode([chosen]): float(logprobs[step, chosen])}
        if k:
            values, indices = logprobs[step].topk(k)
            for v, i in zip(values.tolist(), indices.tolist(), strict=True):
                entry.setdefault(tok.decode([i]), v)
        result.append(entry)
    return result


_DRIVER: TransformersDriver | None = None


def get_driver() -> TransformersDriver:
    """The process-wide transformers driver (models stay loaded between calls)."""
    global _DRIVER
    if _DRIVER is None:
        batch_size = env_int("SL_TRANSFORMERS_BATCH_SIZE", 32)
        dtype = os.environ.get("SL_TRANSFORMERS_DTYPE") or "auto"
        if dtype not in DTYPES:
            raise UserError(f"SL_TRANSFORMERS_DTYPE={dtype!r} is not valid: use one of {DTYPES}")
        _DRIVER = TransformersDriver(batch_size, dtype)
    return _DRIVER
