"""The console of an experiment: the trainer prints no raw dicts, a worker process writes
nothing to the terminal itself (its logs come through the parent, its bars become its line
of the stage display) and the run log keeps everything."""

from pathlib import Path

import pytest
import torch
from console_helpers import chatty_step
from finetuning_helpers import make_job, owl_rows

from sl.experiment.progress import StageProgress
from sl.experiment.workers import worker_pool
from sl.finetuning.lora_train import build_trainer
from sl.utils.logging_setup import log_file, setup_logging

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_the_trainer_prints_no_dict(capfd, tiny_model_dir: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    setup_logging("INFO")
    trainer, _ = build_trainer(
        make_job(tiny_model_dir), owl_rows(8), tiny_model_dir, tmp_path, max_steps=2
    )
    with log_file(tmp_path / "run.log"):
        trainer.train()
    out, err = capfd.readouterr()
    assert "{'" not in out + err and "train_runtime" not in out + err, out + err
    assert "step 2/2 loss" not in err  # per-step losses are DEBUG: the file
    assert "step 1/2 loss" in (tmp_path / "run.log").read_text()


def test_a_worker_writes_through_the_parent(capfd, tmp_path: Path) -> None:
    setup_logging("INFO")
    path = tmp_path / "logs" / "run.log"
    statuses: list[str] = []
    with log_file(path), StageProgress("finetune", 1) as progress:
        progress.worker_status = lambda pid, text: statuses.append(text)  # type: ignore[method-assign]
        with worker_pool(1, progress) as pool:
            assert pool.submit(chatty_step, 7).result() == 7
            progress.step_done("run7", 1.0)
    err = capfd.readouterr().err
    assert "worker step 7 summary" in err and "finetune 1/1: run7 done in 1s" in err
    for quiet in ("worker step 7 detail", "distill", "a dependency's chatter"):
        assert quiet not in err, err
    text = path.read_text()
    assert "w1 " in text and "worker step 7 detail" in text and "a dependency's chatter" in text
    assert any(s.startswith("distill: 100%") for s in statuses), statuses
    assert not any("chatter" in s for s in statuses)  # a plain line is not a bar's state
    assert list(progress.steps.values()) == ["finetune run7"]
