"""Running the scripts in real processes for tests: a config module, run/start helpers."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import openai_env

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args, server=None, env_extra=None, check=True, timeout=120):
    env = {**os.environ, "SL_NO_DOTENV": "1"}
    if server is not None:
        env.update(openai_env(server))
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def start(script, *args, server, env_extra=None):
    env = {**os.environ, "SL_NO_DOTENV": "1", **openai_env(server), **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, proc.stderr
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]
