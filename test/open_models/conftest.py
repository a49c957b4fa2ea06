"""Fixtures for open-model tests: tiny random models built offline once per session."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for `tiny_model`

from tiny_model import build_tiny_lora, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama chat model folder (tokenizer + ChatML template with generation marks)."""
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter (rank 8, nonzero weights) whose base is `tiny_model_dir`."""
    return build_tiny_lora(tiny_model_dir, tmp_path_factory.getbasetemp() / "tiny-lora")
