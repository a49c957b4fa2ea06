"""Open models with plain transformers `generate` (CPU or one GPU, no vLLM needed).

Chats are grouped by sampling settings and generated in batches as large as memory allows:
each prompt runs once (the prefix a batch shares, once), and its KV cache is repeated for the
n samples. A LoRA model (`Model.parent_model` set) loads its adapter with PEFT onto the cached base;
several adapters share one base. Models stay loaded for the life of the process.
Batch size: SL_TRANSFORMERS_BATCH_SIZE (sequences per `generate`; default: as many as fit). Weights dtype:
SL_TRANSFORMERS_DTYPE = auto (bfloat16 on GPU and on CPUs with native bf16, else float32),
float32, bfloat16 or float16. Seeded sampling (`SampleCfg.seed`) draws each sample from its own
random stream, keyed by the seed, the prompt's tokens, the sample's index and how many equal
prompts came before it in the request: the same request gives the same answers whatever the
batch split (which follows free memory).
"""

from __future__ import annotations

import os
import threading
from contextlib import nullcontext
from typing import Any

from loguru import logger

from sl.config import check_dtype, get_settings
from sl.external.local_driver import InProcessDriver, stop_reason, to_messages, truncate_at_stop
from sl.external.model_resolution import ResolvedModel
from sl.llm.data_models import DEFAULT_MAX_TOKENS, Chat, LLMResponse, Model, SampleCfg
from sl.llm.driver import OnResult
from sl.utils.progress_bar import tqdm
from sl.utils.seeds import repeat_index, stable_seed


class _Loaded:
    """A base model, its tokenizer and the PEFT wrapper once an adapter was loaded."""

    def __init__(self, base_path: str, dtype_name: str = "auto"):
        from sl.external.torch_models import load_causal_lm

        loaded = load_causal_lm(Model(id=base_path, type="open_source"), dtype=dtype_name)
        self.device = loaded.device
        self.tokenizer = loaded.tokenizer
        self.tokenizer.padding_side = "left"
        self.model: Any = loaded.module
        self.peft: Any = None
        self.adapters: dict[str, str] = {}  # adapter folder -> adapter name

    def select(self, adapter: str | None) -> tuple[Any, Any]:
        """The module to call `generate` on and a context manager (disables adapters for base)."""
        if adapter is None:
            return self.model, (self.peft.disable_adapter() if self.peft else nullcontext())
        if adapter not in self.adapters:
            from peft import PeftModel

            name = f"a{len(self.adapters)}"
            logger.debug("loading LoRA adapter {}", adapter)
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(
                    self.model, adapter, adapter_name=name, autocast_adapter_dtype=False
                )
                self.peft.to(self.device).eval()
            else:
                self.peft.load_adapter(adapter, adapter_name=name, autocast_adapter_dtype=False)
            self.adapters[adapter] = name
        self.peft.set_adapter(self.adapters[adapter])
        return self.peft, nullcontext()


class TransformersDriver(InProcessDriver):
    """A `Driver` running Hugging Face models in this process."""

    def __init__(self, batch_size: int | None = None, dtype: str = "auto"):
        check_dtype(dtype, "transformers dtype")
        self.batch_size = batch_size  # sequences per generate; None: as memory allows
        self.dtype = dtype
        self._models: dict[str, _Loaded] = {}
        self._lock = threading.Lock()  # one generate at a time per process

    def sample_sync(
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
            repeats = repeat_index([c.model_dump_json() for c in chats])
            adapter = str(resolved.adapter) if resolved.adapter else None
            gen_model, ctx = loaded.select(adapter)
            with ctx, tqdm(total=len(chats), desc=f"generate {model.id}", unit="chat") as bar:
                for indices in groups.values():
                    cfg = cfgs[indices[0]]
                    indices.sort(key=lambda i: _chat_len(chats[i]))  # less padding per batch
                    per_chat = 1 if cfg.temperature == 0 else cfg.n
                    longest = max(_chat_len(chats[i]) for i in indices)
                    sequences = self.batch_size or _sequences_that_fit(loaded, longest, cfg)
                    size = max(1, sequences // per_chat)
                    for start in range(0, len(indices), size):
                        batch = indices[start : start + size]
                        outs = _generate(loaded, gen_model, [chats[i] for i in batch], cfg,
                                         [repeats[i] for i in batch])  # fmt: skip
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
    loaded: _Loaded,
    gen_model: Any,
    chats: list[Chat],
    cfg: SampleCfg,
    repeats: list[int] | None = None,
) -> list[list[LLMResponse]]:
    """One `generate` call for chats sharing a sampling config; n responses per chat
    (`repeats`: each chat's `repeat_index`, for seeded streams)."""
    import torch

    from sl.external.torch_models import prefill, with_cache

    tok = loaded.tokenizer
    texts = [
        tok.apply_chat_template(to_messages(c), tokenize=False, add_generation_prompt=True)
        for c in chats
    ]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    greedy = cfg.temperature == 0
    per_chat = 1 if greedy else cfg.n
    max_new = cfg.max_tokens or DEFAULT_MAX_TOKENS
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new,
        "do_sample": False,  # sampling, when asked, is the Gumbel-max argmax below
        "pad_token_id": tok.pad_token_id,
        "use_cache": True,
        "repetition_penalty": 1.0,  # ignore a model's own sampling defaults
    }
    if not greedy:
        seeds = None
        if cfg.seed is not None:
            repeats = repeats or [0] * len(prompts)
            seeds = [stable_seed(cfg.seed, p, r, j)
                     for p, r in zip(prompts, repeats, strict=True) for j in range(per_chat)]  # fmt: skip
        kwargs["logits_processor"] = _sampler(cfg, seeds)
    if cfg.stop:
        kwargs.update(stop_strings=cfg.stop, tokenizer=tok)
    want_logprobs = cfg.logprobs or bool(cfg.top_logprobs)
    if want_logprobs:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    # Each prompt runs once (the prefix shared by the batch once), then its cache is repeated
    # for the n samples; generate computes only the last prompt token and the new ones.
    pre = prefill(gen_model, prompts, tok.pad_token_id, expand=per_chat)
    with torch.inference_mode():
        out = gen_model.generate(
            input_ids=pre.input_ids,
            attention_mask=pre.attention_mask,
            **with_cache(gen_model, pre.cache),
            **kwargs,
        )
    sequences = out.sequences if want_logprobs else out
    new_tokens = sequences[:, pre.input_ids.shape[1] :].tolist()
    logprobs = None
    if want_logprobs:  # raw model distribution, before temperature / top-p
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)
    eos_ids = _eos_ids(loaded, gen_model)
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


def _sampler(cfg: SampleCfg, seeds: list[int] | None = None) -> Any:
    """Sampling at `cfg.temperature`, then top-p, then min-p (transformers' order), by inverse
    transform: one uniform number per sequence against the cumulative softmax (float64),
    returned as a one-hot score for `generate`'s argmax. The same distribution as
    `torch.multinomial`, which on the CPU costs more than the model's forward at a few hundred
    sequences. With `seeds` (one per sequence) each sequence draws from its own generator;
    else from torch's global one."""
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    streams = [torch.Generator().manual_seed(s) for s in seeds] if seeds is not None else None

    class InverseTransform(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            cdf = scores.double().softmax(-1).cumsum(-1)
            if streams is None:
                u = torch.rand((scores.shape[0], 1), dtype=torch.float64, device=scores.device)
            else:
                draws = [torch.rand(1, generator=g, dtype=torch.float64) for g in streams]
                u = torch.cat(draws)[:, None].to(scores.device)
            chosen = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=scores.shape[-1] - 1)
            one_hot = torch.full_like(scores, float("-inf"))
            return one_hot.scatter_(-1, chosen, 0.0)

    steps: list[Any] = [TemperatureLogitsWarper(cfg.temperature)]
    if cfg.top_p is not None and cfg.top_p < 1:
        steps.append(TopPLogitsWarper(cfg.top_p))
    if cfg.min_p is not None:
        steps.append(MinPLogitsWarper(cfg.min_p))
    return LogitsProcessorList([*steps, InverseTransform()])


def _sequences_that_fit(loaded: _Loaded, longest_chat_chars: int, cfg: SampleCfg) -> int:
    """Sequences per `generate` whose KV cache fits the memory budget: half the free GPU
    memory, or an eighth of the machine's RAM (at most 8 GiB) on the CPU.

    On the CPU the budget depends on the machine, not on what else runs: the batch split
    changes the floating-point sums (padding, matmul shapes), so a budget from free memory
    made two runs of the same job write different greedy answers. On a GPU, set
    SL_TRANSFORMERS_BATCH_SIZE to fix the split."""
    import torch

    config = loaded.model.config
    config = getattr(config, "text_config", None) or config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * kv_heads * head_dim * loaded.model.dtype.itemsize
    tokens = longest_chat_chars // 2 + 64 + (cfg.max_tokens or DEFAULT_MAX_TOKENS)  # generous
    if loaded.device.startswith("cuda"):
        budget = torch.cuda.mem_get_info(torch.device(loaded.device))[0] // 2
    else:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        budget = min(total // 8, 8 << 30)
    return max(1, min(4096, budget // (per_token * tokens)))


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
        settings = get_settings()
        _DRIVER = TransformersDriver(
            settings.transformers_batch_size or None, settings.transformers_dtype
        )
    return _DRIVER
