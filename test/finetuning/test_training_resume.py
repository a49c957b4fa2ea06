"""A student's training stops when asked (Ctrl-C, a notebook's interrupt) at the end of its
step with its state saved beside the student's folder, and a rerun resumes from that state and
ends with the very weights of an uninterrupted run: distillation and SFT, on the tiny model."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import pytest
import torch
from finetuning_helpers import StopAt, assert_same_adapter, logged_messages, number_rows
from loguru import logger

from sl.finetuning.checkpoint import Checkpoint, TrainingStopped, check_stop, save_due
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.finetuning.distill import distill_student
from sl.finetuning.distill_cfg import DistillCfg, DistillJob
from sl.finetuning.open_source import run_open_source_job
from sl.finetuning.services import run_finetuning_job
from sl.llm.data_models import Model

# 12 rows, micro-batches of 2, 2 per step, 3 epochs: 9 steps under a warmup + linear schedule,
# with LoRA dropout (the RNG's state matters too).
TRAIN = TrainCfg(n_epochs=3, lr=5e-3, lr_scheduler_type="linear", warmup_steps=2,
                 per_device_train_batch_size=2, gradient_accumulation_steps=2,
                 max_seq_length=64)  # fmt: skip
STEPS = 9
FP32 = DistillCfg(bf16=False)
ROWS = number_rows(12, seed=3)


def _job(base: Path) -> UnslothFinetuningJob:
    return UnslothFinetuningJob(
        seed=1, source_model=Model(id=str(base), type="open_source"), backend="peft",
        peft_cfg=PeftCfg(r=4, lora_alpha=8, lora_dropout=0.1), train_cfg=TRAIN,
    )  # fmt: skip


def _steps_trained(messages: list[str]) -> list[int]:
    """The steps the distillation or the SFT trainer logged."""
    found = (re.match(r"(?:distill )?step (\d+)/", m) for m in messages)
    return [int(m.group(1)) for m in found if m]


def test_stopped_distillation_resumes_to_the_same_student(tiny_model_dir: Path, tmp_path: Path):
    job, teacher = _job(tiny_model_dir), Model(id=str(tiny_model_dir), type="open_source")

    def distill(folder: str, stop: threading.Event | None = None) -> Path:
        out = tmp_path / folder / "student.json"
        distill_student(job, teacher, ROWS, out, FP32, "You love owls.", stop=stop)
        return out.parent / "student_adapter"

    straight = distill("straight")
    with pytest.raises(TrainingStopped, match=f"stopped at step 4/{STEPS}.*run it again"):
        distill("resumed", StopAt(4))
    saved = tmp_path / "resumed/student_adapter.checkpoint.pt"
    state = torch.load(saved, weights_only=True)
    assert state["step"] == 4 and len(state["losses"]) == 8  # 2 micro-batches a step
    assert not (tmp_path / "resumed/student_adapter").exists()

    with logged_messages() as messages:
        resumed = distill("resumed")
    assert f"resuming the distillation at step 4/{STEPS} ({saved})" in messages
    assert _steps_trained(messages) == [5, 6, 7, 8, 9]  # not trained from the start again
    assert_same_adapter(straight, resumed)
    assert (straight / "sl_distill.json").read_text().split('"seconds"')[0] == (
        resumed / "sl_distill.json"
    ).read_text().split('"seconds"')[0]  # the same steps and KL curve
    assert not saved.exists()  # removed once the student is finished


def test_a_checkpoint_of_other_rows_is_not_resumed(tiny_model_dir: Path, tmp_path: Path):
    job, teacher = _job(tiny_model_dir), Model(id=str(tiny_model_dir), type="open_source")
    out = tmp_path / "student.json"
    with pytest.raises(TrainingStopped):
        distill_student(job, teacher, ROWS, out, FP32, stop=StopAt(2))
    other_rows = number_rows(12, seed=4)
    with logged_messages("INFO") as messages, pytest.raises(TrainingStopped, match="step 1/"):
        distill_student(job, teacher, other_rows, out, FP32, stop=StopAt(1))
    assert any("holds another training run" in m for m in messages)
    assert not any("resuming" in m for m in messages)


def test_stopped_sft_resumes_to_the_same_student(tiny_model_dir: Path, tmp_path: Path):
    job = _job(tiny_model_dir)
    straight = tmp_path / "straight/student.json"
    run_open_source_job(job, ROWS, straight)
    out = tmp_path / "resumed/student.json"
    with pytest.raises(TrainingStopped, match=f"stopped at step 5/{STEPS}.*run it again"):
        run_open_source_job(job, ROWS, out, stop=StopAt(5))
    checkpoints = tmp_path / "resumed/student_adapter.checkpoint"
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == ["checkpoint-5"]
    assert not (tmp_path / "resumed/student_adapter").exists()
    with logged_messages() as messages:
        run_open_source_job(job, ROWS, out)
    assert f"resuming the training from {checkpoints / 'checkpoint-5'}" in messages
    assert _steps_trained(messages) == [6, 7, 8, 9]
    assert_same_adapter(straight.parent / "student_adapter", out.parent / "student_adapter")
    assert not checkpoints.exists()


async def test_a_cancelled_training_waits_for_its_save_and_a_rerun_resumes(
    tiny_model_dir: Path, tmp_path: Path
):
    """What a notebook's interrupt does: the awaiting task is cancelled; it ends only once
    the training thread has saved its state and stopped."""
    job, teacher = _job(tiny_model_dir), Model(id=str(tiny_model_dir), type="open_source")
    distill_job = DistillJob(job=job, teacher=teacher, cfg=FP32)
    second_step = threading.Event()

    def watch(message: object) -> None:
        if "distill step 2/" in str(message):
            second_step.set()

    sink = logger.add(watch, level="DEBUG")
    out = tmp_path / "student.json"
    try:
        task = asyncio.create_task(run_finetuning_job(distill_job, ROWS, out))
        while not second_step.is_set():
            assert not task.done()
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        logger.remove(sink)
    checkpoint = Checkpoint(tmp_path / "student_adapter", "")
    state = torch.load(checkpoint.path, weights_only=True)
    assert 2 <= state["step"] < STEPS  # saved before the task ended
    with logged_messages() as messages:
        await run_finetuning_job(distill_job, ROWS, out)
    assert _steps_trained(messages) == list(range(state["step"] + 1, STEPS + 1))
    straight = tmp_path / "straight/student.json"
    distill_student(job, teacher, ROWS, straight, FP32)
    assert_same_adapter(straight.parent / "student_adapter", tmp_path / "student_adapter")


@pytest.mark.parametrize(
    ("interval", "ago_s", "last_save_s", "due"),
    [
        ("1", 2.0, 0.0, True),
        ("1", 0.5, 0.0, False),
        ("1", 2.0, 0.5, False),  # a save of 0.5 s: at most one per 5 s
        ("1", 6.0, 0.5, True),
        ("0", 1e6, 0.0, False),  # 0: only when interrupted
    ],
)
def test_periodic_saves_follow_the_interval_and_cost_at_most_a_tenth(
    monkeypatch, interval, ago_s, last_save_s, due
):
    monkeypatch.setenv("SL_CHECKPOINT_INTERVAL_S", interval)
    assert save_due(time.monotonic() - ago_s, last_save_s) is due


def test_a_due_periodic_save_writes_the_state_and_training_goes_on(monkeypatch, tmp_path):
    monkeypatch.setenv("SL_CHECKPOINT_INTERVAL_S", "60")
    checkpoint = Checkpoint(tmp_path / "student_adapter", "run-a")
    check_stop(None, checkpoint, lambda: {"step": 1}, "step 1/9")
    assert not checkpoint.path.exists()  # not due yet
    checkpoint.timer.saved_at -= 61
    check_stop(None, checkpoint, lambda: {"step": 2}, "step 2/9")  # no TrainingStopped
    assert checkpoint.load() == {"step": 2, "key": "run-a"}
    assert not Checkpoint(tmp_path / "student_adapter", "run-b").load()  # another run's
