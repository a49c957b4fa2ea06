"""Fixtures for fine-tuning tests: the tiny random chat model, built offline once per session."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `finetuning_helpers`

from tiny_model import build_tiny_model  # noqa: E402  (test/ is on pythonpath)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama chat model folder (ChatML template, eos <|im_end|>)."""
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny-llama")
