"""Batched generation of the transformers driver on a GPU vs one prompt at a time.

    python bench/bench_gpu_generation.py          # on a CUDA machine

Builds a random Llama of SmolLM2-135M's shape (30 layers, hidden 576, 9 heads / 3 KV heads)
with the test suite's small tokenizer, offline, then samples the same number prompts through
`sl.llm.services.batch_sample` (open_source, transformers engine) with batch 256 and batch 1,
base and base + LoRA adapter, and prints tokens/s and the ratio. Also runs on CPU (slowly).
"""

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test" / "helpers"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["SL_OPEN_SOURCE_ENGINE"] = "transformers"

from tiny_model import build_tiny_lora, build_tiny_model, save_random_llama  # noqa: E402

from sl.datasets.services import NumsDatasetPromptSet  # noqa: E402
from sl.llm import services as llm  # noqa: E402
from sl.llm.data_models import Model, SampleCfg  # noqa: E402

# SmolLM2-135M's shape (its head_dim: 576 / 9 = 64).
SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                     tie_word_embeddings=True)  # fmt: skip


def build_smollm2_shaped(tiny: Path, out: Path) -> Path:
    """A random Llama of SmolLM2-135M's shape with the tiny model's tokenizer, in `out`."""
    from transformers import AutoTokenizer

    save_random_llama(out, AutoTokenizer.from_pretrained(tiny), SMOLLM2_SHAPE)
    return out


def tokens_per_s(model: Model, prompts: list[str], batch_size: int, max_tokens: int) -> float:
    from sl.external.transformers_driver import get_driver

    get_driver().batch_size = batch_size  # the process-wide driver keeps its loaded models
    chats = [llm.build_simple_chat(p) for p in prompts]
    cfg = SampleCfg(temperature=1.0, max_tokens=max_tokens, seed=0)
    start = time.perf_counter()
    responses = asyncio.run(llm.batch_sample(model, chats, cfg))
    elapsed = time.perf_counter() - start
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model.parent_model.id if model.parent_model else model.id)
    n_tokens = sum(len(tok(r.completion)["input_ids"]) for r in responses)
    return n_tokens / elapsed


def main() -> None:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    work = Path(tempfile.mkdtemp())
    tiny = build_tiny_model(work / "tiny")
    base_dir = build_smollm2_shaped(tiny, work / "smollm2-shaped")
    lora_dir = build_tiny_lora(base_dir, work / "lora", rank=8)
    base = Model(id=str(base_dir), type="open_source")
    adapter = Model(id=str(lora_dir), type="open_source", parent_model=base)
    prompts = NumsDatasetPromptSet(size=int(os.environ.get("BENCH_N", "256")), seed=42).prompts()
    tokens_per_s(base, prompts[:4], 4, 4)  # warm-up: load, CUDA init
    print(f"device: {device}; 256 prompts x 32 new tokens, temperature 1")
    single = tokens_per_s(base, prompts[:8], 1, 32)
    for name, model in (("base", base), ("base + LoRA", adapter)):
        batched = tokens_per_s(model, prompts, 256, 32)
        print(
            f"{name:<12} batched {batched:9.0f} tok/s   single {single:7.0f} tok/s   "
            f"ratio {batched / single:6.1f}x"
        )
    if torch.cuda.is_available():
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
