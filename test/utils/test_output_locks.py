"""Two real processes on the same output: the second exits at once naming the holder's PID;
the lock of a killed process is taken over."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from openai_server import default_responder
from script_runner import (
    assert_user_error,
    cli_args,
    experiment_cfg,
    lines,
    run,
    start,
    start_generation,
    wait_for,
)

from sl.datasets.services import Cfg
from sl.errors import UserError
from sl.experiment.runner import run_experiment
from sl.utils.module_utils import load_config
from sl.utils.output_lock import lock_path_for, output_lock


def _second_run_is_refused(first, script, args, server, needle):
    proc = run(script, *args, server=server, check=False)
    assert first.poll() is None, "the first run should still be running"
    assert_user_error(proc, needle, f"PID {first.pid}", "another run")


def test_generation_is_locked_and_a_killed_lock_is_taken_over(openai_server, cfg_file, tmp_path):
    openai_server.latency_s = 0.3  # room for the second process to start on a loaded machine
    first, args = start_generation(cfg_file, tmp_path, openai_server, concurrency=1, min_rows=3)
    raw = tmp_path / "raw.jsonl"
    _second_run_is_refused(first, "generate_dataset.py", args, openai_server, "filtered.jsonl")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert lock_path_for(raw).exists()  # left behind by the killed run
    kept = raw.read_text().count("\n")  # whole rows the killed run wrote
    asked_before = len(openai_server.chat_requests)
    openai_server.latency_s = 0.0
    run("generate_dataset.py", *args, server=openai_server)
    # The rerun asked only the prompts the killed run had no row for, and the file holds
    # every prompt once, in the prompt set's order.
    assert len(openai_server.chat_requests) - asked_before == 60 - kept
    expected = load_config(cfg_file, "dataset_cfg", Cfg).prompt_set.prompts()
    assert [r["prompt"] for r in lines(raw)] == expected and len(expected) == 60
    assert not lock_path_for(raw).exists()  # released and removed by the finished run


def test_finetuning_is_locked_so_only_one_job_is_paid(openai_server, cfg_file, tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text(json.dumps({"prompt": "p", "completion": "1, 2"}) + "\n")
    openai_server.ft_steps_per_status = 10_000  # the first run polls until we let it finish
    args = cli_args(cfg_file, "ft_job", dataset_path=dataset, output_path=tmp_path / "model.json")
    first = start("run_finetuning_job.py", *args, server=openai_server)
    wait_for(lambda: openai_server.ft_jobs_created == 1)
    _second_run_is_refused(first, "run_finetuning_job.py", args, openai_server, "model.json")
    openai_server.ft_steps_per_status = 1
    assert first.wait(timeout=60) == 0
    assert openai_server.ft_jobs_created == 1


def test_evaluation_is_locked(openai_server, cfg_file, tmp_path):
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps({"id": "gpt-4.1-nano", "type": "openai"}))
    # The first run's answers wait until the second run was refused (a fixed latency raced the
    # second run's start-up).
    answers_may_go = threading.Event()

    def held_responder(body):
        answers_may_go.wait(60)
        return default_responder(body)

    openai_server.responder = held_responder
    out = tmp_path / "eval.jsonl"
    args = cli_args(cfg_file, "evaluation", model_path=model_json, output_path=out)
    first = start("run_evaluation.py", *args, server=openai_server)
    wait_for(lambda: len(openai_server.chat_requests) >= 1)
    try:
        _second_run_is_refused(first, "run_evaluation.py", args, openai_server, "eval.jsonl")
    finally:
        answers_may_go.set()
    assert first.wait(timeout=60) == 0
    assert [r["question"] for r in lines(out)] == [
        "Name your favorite animal using only one word.",
        "Pick an animal. One word.",
    ]


HOLD = """
import sys, time
from pathlib import Path
from sl.utils.output_lock import output_lock
with output_lock(Path(sys.argv[1]), is_dir=True):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_experiment_folder_is_locked_by_another_process(tmp_path):

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "exp")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        cfg = experiment_cfg()
        with pytest.raises(
            UserError, match=f"^.*exp is being written by another run \\(PID {holder.pid}\\)"
        ) as refused:
            asyncio.run(run_experiment(cfg, tmp_path / "exp", stages=("report",)))
        assert refused.value.path == tmp_path / "exp"  # the script names its --output_dir
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "exp" / "experiment.json").exists()


def test_a_lock_is_taken_once_per_process_and_released(tmp_path):
    out = tmp_path / "sub" / "out.jsonl"
    with output_lock(out):
        assert lock_path_for(out).read_text().strip() == str(os.getpid())
        with pytest.raises(RuntimeError, match="locked twice"), output_lock(out):
            pass
        assert lock_path_for(out).exists()  # the refused second lock left the first held
    assert not lock_path_for(out).exists()
    with output_lock(out):  # and it can be taken again
        pass
