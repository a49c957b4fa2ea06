"""Bad input through the real scripts (subprocesses): one line, exit 2, nothing of the user's
touched (issue #20: analyze_results ownership, unsafe target names, config modules that
exit)."""

from pathlib import Path

import pytest
from script_runner import assert_user_error, cli_args, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "multi_animal"


def _analyze(out: Path, check=True):
    conditions = []
    for name in ("control", "eagle"):
        conditions += ["--condition", name, *(FIXTURES / f"{name}_run{r}.jsonl" for r in (1, 2))]
    return run("analyze_results.py", *conditions, "--targets", "eagle", "--output_dir", out,
               check=check)  # fmt: skip


def test_analyze_results_keeps_a_users_file_and_replaces_its_own(tmp_path):
    out = tmp_path / "analysis"
    out.mkdir()
    (out / "results.json").write_text("my own notes\n")
    assert_user_error(_analyze(out, check=False), "results.json exists and was not written by")
    assert (out / "results.json").read_text() == "my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # nothing else written

    (out / "results.json").unlink()
    _analyze(out)
    first = (out / "results.csv").read_text()
    _analyze(out)  # a rerun replaces what an analysis wrote
    assert (out / "results.csv").read_text() == first


def test_analyze_results_output_folder_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    assert_user_error(_analyze(tmp_path / "f", check=False), "--output_dir", "is a file")


def test_experiment_target_outside_the_output_folder(tmp_path):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "from script_runner import experiment_cfg\n"
        "experiment = experiment_cfg().model_copy(update={'targets': ['../../etc']})\n"
        "experiment = type(experiment).model_validate(experiment.model_dump())\n"
    )
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "helpers")}
    proc = run("run_experiment.py", *cli_args(cfg, "experiment"), "--output_dir",
               tmp_path / "out", env_extra=env, check=False)  # fmt: skip
    assert_user_error(proc, "targets: '../../etc' cannot name a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.py"]


@pytest.mark.parametrize("code", ["0", "1"])
def test_config_module_that_exits(tmp_path, code):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"import sys\nsys.exit({code})\n")
    args = cli_args(cfg, "x", raw_dataset_path=tmp_path / "r", filtered_dataset_path=tmp_path / "f")
    proc = run("generate_dataset.py", *args, check=False)
    assert_user_error(proc, f"--config_module {cfg} called sys.exit({code})")
