"""Unsloth + TRL backend: train, save, reload. Runs only where unsloth is installed.

.venv-unsloth/bin/python -m pytest test/finetuning/test_lora_sft_unsloth.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("unsloth")

from finetuning_helpers import (  # noqa: E402
    OWLS,
    QUESTION,
    StopAt,
    assert_same_adapter,
    greedy,
    logged_messages,
    make_job,
    owl_rows,
)

from sl.finetuning.checkpoint import TrainingStopped  # noqa: E402
from sl.finetuning.data_models import TrainCfg  # noqa: E402
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


def test_a_stopped_unsloth_training_resumes_to_the_same_adapter(tiny_model_dir, tmp_path):
    train = TrainCfg(n_epochs=3, lr=1e-3, per_device_train_batch_size=4,
                     gradient_accumulation_steps=1, max_seq_length=64)  # fmt: skip
    job = make_job(tiny_model_dir, backend="unsloth", train_cfg=train)  # 12 steps
    run_open_source_job(job, owl_rows(), tmp_path / "straight/s.json")
    with pytest.raises(TrainingStopped, match="stopped at step 5/12"):
        run_open_source_job(job, owl_rows(), tmp_path / "resumed/s.json", stop=StopAt(5))
    saved = tmp_path / "resumed/s_adapter.checkpoint/checkpoint-5"
    assert (saved / "trainer_state.json").is_file()
    with logged_messages("INFO") as messages:
        run_open_source_job(job, owl_rows(), tmp_path / "resumed/s.json")
    assert f"resuming the training from {saved}" in messages
    assert_same_adapter(tmp_path / "straight/s_adapter", tmp_path / "resumed/s_adapter")
