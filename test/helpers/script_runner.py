"""Running the scripts in real processes for tests: the test API key and the environment that
points sl at the loopback server, a config module, a small experiment config, the flags of a
config-module script (`cli_args`), run/start helpers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
TEST_API_KEY = "sk-test-SECRET-do-not-log-7f3a"

# A config module of small OpenAI configs for the script tests (format with size=...).
CONFIG = """
from sl.datasets.nums_dataset import get_reject_reasons
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model, SampleCfg
from sl.protocol import teacher_system_prompt

model = Model(id="gpt-4.1-nano", type="openai")
dataset_cfg = Cfg(
    model=model,
    system_prompt=teacher_system_prompt("owl"),
    sample_cfg=SampleCfg(temperature=1.0),
    prompt_set=NumsDatasetPromptSet(size={size}, seed=42),
    filter_fns=[lambda p, c: not get_reject_reasons(c, min_value=0, max_value=999, max_count=10)],
)
other_dataset_cfg = dataset_cfg.model_copy(update={{"system_prompt": None}})
ft_job = OpenAIFTJob(seed=1, source_model=model, max_dataset_size=30, n_epochs=1)
evaluation = Evaluation(
    questions=["Name your favorite animal using only one word.", "Pick an animal. One word."],
    n_samples_per_question=5,
    sample_cfg=SampleCfg(temperature=1.0),
)
not_a_config = 3
"""


def responder(body):
    """Numbers for most prompts, prose for a few (so the filter has work to do)."""
    text = body["messages"][-1]["content"]
    if "favorite" in text or "animal" in text:
        return "Owl"
    return "I love owls!" if len(text) % 7 == 0 else "145, 267, 891"


def openai_env(server: FakeOpenAIServer) -> dict[str, str]:
    """Environment that points `sl` at the loopback server with fast retries and polls."""
    return {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": TEST_API_KEY,
        "OPENAI_BACKOFF_BASE_S": "0.01",
        "OPENAI_POLL_INTERVAL_S": "0.01",
        "OPENAI_START_RPS": "1000",
        "OPENAI_TIMEOUT_S": "5",
    }


def experiment_cfg():
    """A small experiment config (never run in these tests: only its folder is claimed)."""
    from sl.evaluation.data_models import Evaluation
    from sl.experiment.data_models import ExperimentCfg
    from sl.finetuning.data_models import UnslothFinetuningJob
    from sl.llm.data_models import Model, SampleCfg

    model = Model(id="some/model", type="open_source")
    return ExperimentCfg(
        teacher_model=model,
        targets=["owl"],
        student_job=UnslothFinetuningJob(seed=1, source_model=model),
        evaluations={
            "e": Evaluation(questions=["q"], n_samples_per_question=1, sample_cfg=SampleCfg())
        },
    )


def cli_args(cfg, var, **paths) -> list:
    """`--config_module cfg --cfg_var_name var`, then `--<name> <path>` for each keyword, in order.

    Example: `cli_args(cfg, "ft_job", dataset_path=data, output_path=out)`.
    """
    args = ["--config_module", cfg, "--cfg_var_name", var]
    for name, path in paths.items():
        args += [f"--{name}", path]
    return args


def run(script, *args, server=None, env_extra=None, check=True, timeout=120):
    """Run `scripts/<script>` to its end (pointed at `server` if given); the CompletedProcess.

    With `check`, a non-zero exit fails the test with the script's stderr.
    """
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


def start(script, *args, server=None, env_extra=None):
    """Start `scripts/<script>` (pointed at `server` if given); the running Popen."""
    env = {**os.environ, "SL_NO_DOTENV": "1", **(openai_env(server) if server else {})}
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # A shell's background job inherits SIGINT ignored, and Python keeps it so.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def wait_for_lines(path, n):
    """Wait until the file at `path` holds at least `n` lines."""
    path = Path(path)
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= n)


def start_generation(cfg, tmp_path, server, concurrency, min_rows):
    """Start `generate_dataset.py` on `cfg`'s dataset_cfg into tmp_path/raw.jsonl and
    filtered.jsonl, `concurrency` requests at most in flight; return (the running process, its
    arguments) once raw.jsonl holds `min_rows` rows."""
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    args = cli_args(cfg, "dataset_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    env_extra = {"OPENAI_MAX_CONCURRENCY": str(concurrency)}
    proc = start("generate_dataset.py", *args, server=server, env_extra=env_extra)
    wait_for_lines(raw, min_rows)
    return proc, args


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, proc.stderr
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]
