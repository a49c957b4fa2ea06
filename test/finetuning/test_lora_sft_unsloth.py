"""Unsloth + TRL backend: train, save, reload. Runs only where unsloth is installed.

.venv-unsloth/bin/python -m pytest test/finetuning/test_lora_sft_unsloth.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("unsloth")

from finetuning_helpers import OWLS, QUESTION, greedy, make_job, owl_rows  # noqa: E402

from sl.finetuning.lora_train import pick_backend  # noqa: E402
from sl.finetuning.open_source import MARKER, run_open_source_job  # noqa: E402


def test_auto_picks_unsloth_when_installed() -> None:
    assert pick_backend("auto") == "unsloth"
    assert pick_backend("peft") == "peft"


async def test_unsloth_trains_saves_and_reloads(tiny_model_dir: Path, tmp_path: Path) -> None:
    job = make_job(tiny_model_dir, backend="unsloth")
    model = run_open_source_job(job, owl_rows(), tmp_path / "student.json")
    adapter = tmp_path / "student_adapter"
    assert model.id == str(adapter) and model.parent_model == job.source_model
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
        p.name for p in adapter.iterdir()
    }
    assert json.loads((adapter / MARKER).read_text())["backend"] == "unsloth"
    assert not (await greedy(job.source_model, QUESTION)).strip().startswith(OWLS)
    assert (await greedy(model, QUESTION)).strip().startswith(OWLS)
