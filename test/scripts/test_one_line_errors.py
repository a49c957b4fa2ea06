"""Every error a user can meet ends as one line with a non-zero exit code, before any output
is claimed or request sent (run through `run_script`, as the scripts do)."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli import RESTARTS, RESUMES, run_phase, run_script
from script_runner import wait_for

from sl.evaluation.data_models import Evaluation
from sl.llm.data_models import Model
from sl.utils.file_utils import JsonlAppender, write_text_atomic
from sl.utils.output_lock import lock_path_for

pytestmark = pytest.mark.usefixtures("restore_logging")


def one_line_error(capsys, fn, code=2):
    """Run `fn` as a script would; return its single error line."""
    with pytest.raises(SystemExit) as exit_info:
        run_script(fn)
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in err, err
    assert exit_info.value.code == code, err
    return error_lines[0]


def only(tmp_path, *names):
    """The files in tmp_path are exactly `names` (nothing was claimed or written)."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def _gen(cfg_file, raw, filtered, var="dataset_cfg"):
    return lambda: run_phase("generate_dataset", cfg_file, var, [], raw, filtered)


def _ft(cfg_file, dataset, out, var="ft_job"):
    return lambda: run_phase("finetune", cfg_file, var, [], dataset, out)


def _eval(cfg_file, model_json, out):
    return lambda: run_phase("evaluate", cfg_file, "evaluation", [], model_json, out)


def _model_json(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"id": "gpt-4.1-nano", "type": "openai"}))
    return path


def _dataset(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "1, 2"}) + "\n")
    return path


# --- paths ----------------------------------------------------------------------------------


def test_output_parent_is_a_file(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "afile").write_text("x")
    line = one_line_error(
        capsys, _gen(cfg_file, tmp_path / "afile" / "raw.jsonl", tmp_path / "f.jsonl")
    )
    assert "afile/raw.jsonl" in line and "is a file, not a folder" in line
    only(tmp_path, "cfg.py", "afile")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_folder_not_writable(capsys, openai_server, cfg_file, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    line = one_line_error(capsys, _gen(cfg_file, locked / "raw.jsonl", tmp_path / "f.jsonl"))
    assert "not writable" in line


def test_directory_as_dataset(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "d").mkdir()
    line = one_line_error(capsys, _ft(cfg_file, tmp_path / "d", tmp_path / "m.json"))
    assert "/d: cannot read it (Is a directory)" in line
    only(tmp_path, "cfg.py", "d")


def test_directory_as_model_file(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "d").mkdir()
    line = one_line_error(capsys, _eval(cfg_file, tmp_path / "d", tmp_path / "e.jsonl"))
    assert "--model_path" in line and "Is a directory" in line
    only(tmp_path, "cfg.py", "d")


def test_directory_as_output_file(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "e").mkdir()
    line = one_line_error(capsys, _eval(cfg_file, _model_json(tmp_path), tmp_path / "e"))
    assert "--output_path" in line and "is a folder" in line
    only(tmp_path, "cfg.py", "e", "model.json")


def test_non_utf8_dataset(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "data.jsonl").write_bytes(b'{"prompt": "\xff", "completion": "1"}\n')
    line = one_line_error(capsys, _ft(cfg_file, tmp_path / "data.jsonl", tmp_path / "m.json"))
    assert "data.jsonl: cannot read it (not UTF-8 text" in line
    only(tmp_path, "cfg.py", "data.jsonl")


def test_non_utf8_model_file(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "model.json").write_bytes(b'{"id": "\xfe", "type": "openai"}')
    line = one_line_error(capsys, _eval(cfg_file, tmp_path / "model.json", tmp_path / "e.jsonl"))
    assert "--model_path" in line and "not UTF-8" in line


def test_library_errors_name_paths_and_scripts_name_their_flags(openai_server, cfg_file, tmp_path):
    import asyncio

    from cli import naming_flags

    from sl import phases
    from sl.errors import UserError
    from sl.utils.module_utils import load_config

    (tmp_path / "e").mkdir()
    evaluation = load_config(cfg_file, "evaluation", Evaluation)
    model = Model(id="gpt-4.1-nano", type="openai")
    with pytest.raises(UserError) as raised:
        asyncio.run(phases.evaluate(evaluation, model, tmp_path / "e"))
    assert str(raised.value) == f"{tmp_path / 'e'} is a folder: give a file path"
    assert raised.value.path == tmp_path / "e"
    with pytest.raises(UserError) as named, naming_flags(output_path=tmp_path / "e"):
        raise raised.value
    assert str(named.value) == f"--output_path {tmp_path / 'e'} is a folder: give a file path"
    # A path under a folder flag is named by it; other paths and errors pass unchanged.
    inner = UserError(f"{tmp_path / 'e' / 'x'} is bad", path=tmp_path / "e" / "x")
    folder = naming_flags(output_dir=tmp_path / "e")
    with pytest.raises(UserError, match="^--output_dir .*/e/x is bad$"), folder:
        raise inner
    for error in (inner, UserError("no path here")):
        with pytest.raises(UserError) as unchanged, naming_flags(output_path=tmp_path / "f"):
            raise error
        assert unchanged.value is error


def test_config_module_errors_name_the_flags(capsys, cfg_file, tmp_path):
    line = one_line_error(capsys, _gen(tmp_path / "none.py", tmp_path / "r.jsonl", tmp_path / "f"))
    assert line == f"error: --config_module {tmp_path / 'none.py'}: file not found"
    line = one_line_error(capsys, _gen(cfg_file, tmp_path / "r.jsonl", tmp_path / "f", "nope"))
    assert line.startswith(f"error: --cfg_var_name nope is not defined in {cfg_file}")


# --- corrupt records of sl ------------------------------------------------------------------


def test_corrupt_job_state(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "m.json.job.json").write_text('{"job_id": ')
    line = one_line_error(capsys, _ft(cfg_file, _dataset(tmp_path), tmp_path / "m.json"))
    assert "m.json.job.json is corrupt" in line and "delete it" in line
    assert openai_server.requests_total == 0


def test_corrupt_batch_state(capsys, openai_server, tmp_path):
    from sl.datasets.services import NumsDatasetPromptSet, generate_raw_dataset
    from sl.llm.data_models import Model, SampleCfg

    (tmp_path / "r.jsonl.batch.json").write_text("[1, 2")
    model = Model(id="gpt-4.1-nano", type="openai")

    def main():
        import asyncio

        asyncio.run(
            generate_raw_dataset(
                model, None, SampleCfg(), NumsDatasetPromptSet(size=2), tmp_path / "r.jsonl", True
            )
        )

    assert "r.jsonl.batch.json is corrupt" in one_line_error(capsys, main)
    assert openai_server.requests_total == 0


def test_corrupt_meta(capsys, openai_server, cfg_file, tmp_path):
    (tmp_path / "raw.jsonl.meta.json").write_text("{")
    line = one_line_error(capsys, _gen(cfg_file, tmp_path / "raw.jsonl", tmp_path / "f.jsonl"))
    assert "raw.jsonl.meta.json is corrupt" in line


# (a corrupt experiment.json: test_output_ownership.py)


# --- values checked before anything is claimed or sent ------------------------------------

BAD_CONFIGS = {
    "example counts": (
        "from sl.datasets.services import NumsDatasetPromptSet\n"
        "x = NumsDatasetPromptSet(example_min_count=9, example_max_count=3)\n",
        "example_min_count 9 must be < example_max_count 3",
    ),
    "answer count": (
        "from sl.datasets.services import NumsDatasetPromptSet\n"
        "x = NumsDatasetPromptSet(answer_count=-3)\n",
        "answer_count",
    ),
    "epochs": (
        "from sl.finetuning.data_models import OpenAIFTJob\nfrom sl.llm.data_models import Model\n"
        "x = OpenAIFTJob(seed=1, source_model=Model(id='m', type='openai'), n_epochs=-2)\n",
        "n_epochs: -2 is not valid",
    ),
    "batch size": (
        "from sl.finetuning.data_models import OpenAIFTJob\nfrom sl.llm.data_models import Model\n"
        "x = OpenAIFTJob(seed=1, source_model=Model(id='m', type='openai'), batch_size=0)\n",
        "batch_size: 0 is not valid",
    ),
    "lr multiplier": (
        "from sl.finetuning.data_models import OpenAIFTJob\nfrom sl.llm.data_models import Model\n"
        "x = OpenAIFTJob(seed=1, source_model=Model(id='m', type='openai'), lr_multiplier=-1)\n",
        "lr_multiplier: -1.0 is not valid",
    ),
    "lr multiplier nan": (
        "from sl.finetuning.data_models import OpenAIFTJob\nfrom sl.llm.data_models import Model\n"
        "x = OpenAIFTJob(seed=1, source_model=Model(id='m', type='openai'), "
        "lr_multiplier=float('nan'))\n",
        "lr_multiplier: Input should be a finite number (got nan)",
    ),
    "max tokens": (
        "from sl.llm.data_models import SampleCfg\nx = SampleCfg(max_tokens=10**15)\n",
        "max_tokens: Input should be less than or equal to 1000000",
    ),
    "prompt set size": (
        "from sl.datasets.services import NumsDatasetPromptSet\n"
        "x = NumsDatasetPromptSet(size=10**10)\n",
        "size: Input should be less than or equal to 10000000",
    ),
    "samples per question": (
        "from sl.evaluation.data_models import Evaluation\nfrom sl.llm.data_models import "
        "SampleCfg\nx = Evaluation(questions=['q'], n_samples_per_question=10**10, "
        "sample_cfg=SampleCfg())\n",
        "n_samples_per_question: Input should be less than or equal to 100000",
    ),
    "empty model id": (
        "from sl.llm.data_models import Model\nx = Model(id='', type='openai')\n",
        "the model id is empty",
    ),
    "lora dropout": (
        "from sl.finetuning.data_models import PeftCfg\nx = PeftCfg(lora_dropout=-3)\n",
        "lora_dropout: Input should be greater than or equal to 0",
    ),
    "exits with 0": ("import sys\nsys.exit(0)\n", "called sys.exit(0) while being imported"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_values(capsys, openai_server, tmp_path, case):
    text, needle = BAD_CONFIGS[case]
    cfg = tmp_path / "bad.py"
    cfg.write_text(text)
    line = one_line_error(capsys, _gen(cfg, tmp_path / "r.jsonl", tmp_path / "f.jsonl", "x"))
    assert needle in line and "bad.py" in line
    only(tmp_path, "bad.py")
    assert openai_server.requests_total == 0


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("OPENAI_MAX_CONCURRENCY", "0", "greater than or equal to 1"),
        ("OPENAI_START_RPS", "0", "greater than 0"),
        ("OPENAI_MAX_RETRIES", "-1", "greater than or equal to 0"),
        ("OPENAI_API_KEY", "", "OPENAI_API_KEY is not set"),
    ],
)
def test_bad_settings_fail_before_outputs_are_claimed(
    capsys, openai_server, cfg_file, tmp_path, monkeypatch, var, value, needle
):
    monkeypatch.setenv(var, value)
    line = one_line_error(capsys, _gen(cfg_file, tmp_path / "r.jsonl", tmp_path / "f.jsonl"))
    assert var in line and needle in line
    only(tmp_path, "cfg.py")  # no .meta.json left to refuse the corrected config
    assert openai_server.requests_total == 0


# --- remote failures ------------------------------------------------------------------------


def test_finetune_with_server_unreachable(capsys, openai_server, cfg_file, tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "1")
    line = one_line_error(capsys, _ft(cfg_file, _dataset(tmp_path), tmp_path / "m.json"), code=1)
    assert f"connection refused to 127.0.0.1:{port}" in line


def test_unexpected_errors_are_one_line_with_the_traceback_at_debug(capsys, monkeypatch):
    def bug():
        raise KeyError("oops")

    line = one_line_error(capsys, bug, code=1)
    assert "unexpected KeyError" in line and "SL_LOG_LEVEL=DEBUG" in line
    monkeypatch.setenv("SL_LOG_LEVEL", "DEBUG")
    with pytest.raises(SystemExit):
        run_script(bug)
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("message", [RESUMES, RESTARTS])
def test_interrupt_message(capsys, message):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        run_script(interrupted, interrupted=message)
    assert e.value.code == 130 and capsys.readouterr().err.strip() == message


def test_interrupted_mnist_script_does_not_promise_a_resume(tmp_path):
    """Ctrl-C while the MNIST script trains (a real process) says a rerun starts over."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "run_mnist_experiment.py"
    out = tmp_path / "mnist"
    # Long enough (100 epochs) that the interrupt always lands while it trains.
    flags = ["--n_models", "2", "--hidden", "32", "--train_subset", "2048", "--device", "cpu",
             "--teacher_epochs", "100"]  # fmt: skip
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "SL_NO_DOTENV": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), *flags, "--output_dir", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # A shell's background job inherits SIGINT ignored, and Python keeps it so.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        wait_for(lambda: lock_path_for(out / "results.json").exists() or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)  # main() holds the results' lock: it is training
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == RESTARTS


def test_atomic_writes_and_appends_get_the_same_permissions(tmp_path):
    write_text_atomic(tmp_path / "a.json", "{}")
    with JsonlAppender(tmp_path / "b.jsonl") as appender:
        appender.append({"x": 1})
    mode = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert mode["a.json"] == mode["b.jsonl"] != 0o600


# --- rows and paths ---------------------------------------------------------------------------


def test_dataset_row_with_an_empty_completion(capsys, openai_server, cfg_file, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "p", "completion": "1, 2"}\n{"prompt": "p", "completion": ""}\n')
    line = one_line_error(capsys, _ft(cfg_file, data, tmp_path / "m.json"))
    assert f"{data}:2: malformed line (the completion is empty" in line
    assert openai_server.requests_total == 0


def test_fifo_as_dataset_fails_at_once(capsys, openai_server, cfg_file, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    line = one_line_error(capsys, _ft(cfg_file, tmp_path / "fifo", tmp_path / "m.json"))
    assert "fifo is a FIFO, not a regular file" in line
    assert openai_server.requests_total == 0
