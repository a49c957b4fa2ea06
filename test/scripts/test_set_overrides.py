"""`--set field.path=value`: every script that runs a config object overrides its fields,
validated by the model, one line on a bad path or value, and part of the ownership hash."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_runner import ROOT, assert_user_error, cli_args, lines, responder, run

from sl.datasets.services import Cfg
from sl.errors import UserError
from sl.experiment.data_models import ExperimentCfg
from sl.utils.module_utils import load_config, override_fields


def _generate(cfg_file: Path, tmp_path: Path, *sets: str, server, check=True):
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    args = cli_args(cfg_file, "dataset_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    for s in sets:
        args += ["--set", s]
    return run("generate_dataset.py", *args, server=server, check=check)


def test_generate_dataset_with_overrides_end_to_end(openai_server, cfg_file, tmp_path):
    openai_server.responder = responder
    sets = ("prompt_set.size=5", "system_prompt=You love cats.")  # JSON, and a plain string
    out = _generate(cfg_file, tmp_path, *sets, server=openai_server)
    assert len(lines(tmp_path / "raw.jsonl")) == 5  # the module says 60
    assert "of 5 rows kept" in out.stdout
    assert openai_server.n_chat_ok == 5
    systems = {r["messages"][0]["content"] for r in openai_server.chat_requests}
    assert systems == {"You love cats."}

    # The override is part of what owns the files: without it they are another config's.
    openai_server.reset_stats()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    refused = _generate(cfg_file, tmp_path, server=openai_server, check=False)
    assert_user_error(refused, "--filtered_dataset_path", "system_prompt, prompt_set differ")
    assert openai_server.n_chat_ok == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    # With the same overrides the finished files are reused: nothing asked again.
    _generate(cfg_file, tmp_path, *sets, server=openai_server)
    assert openai_server.n_chat_ok == 0


def test_evaluation_with_an_override(openai_server, cfg_file, tmp_path):
    openai_server.responder = responder
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"id": "gpt-4.1-nano", "type": "openai"}))
    results = tmp_path / "eval.jsonl"
    args = cli_args(cfg_file, "evaluation", model_path=model, output_path=results)
    run("run_evaluation.py", *args, "--set", "n_samples_per_question=2", server=openai_server)
    assert [len(r["responses"]) for r in lines(results)] == [2, 2]  # the module says 5


def _script_args(script: str, cfg_file: Path, out: Path) -> list:
    if script == "generate_dataset.py":
        paths = {"raw_dataset_path": out / "r.jsonl", "filtered_dataset_path": out / "f.jsonl"}
        return cli_args(cfg_file, "dataset_cfg", **paths)
    if script == "run_finetuning_job.py":
        paths = {"dataset_path": out / "d.jsonl", "output_path": out / "m.json"}
        return cli_args(cfg_file, "ft_job", **paths)
    if script == "run_experiment.py":
        return cli_args(cfg_file, "experiment", output_dir=out / "exp")
    if script == "modal_generate_dataset.py":  # config checked before Modal is called
        shipped = ROOT / "cfgs" / "preference_numbers" / "cfgs.py"
        return cli_args(shipped, "owl_dataset_cfg")
    return ["--output_dir", out / "mnist"]  # run_mnist_experiment.py


# (script, --set value, what the one line says after "--set <value>: ")
BAD = [
    ("generate_dataset.py", "prompt_set.nope=1", "NumsDatasetPromptSet has no field 'nope'"),
    ("generate_dataset.py", "prompt_set.size=abc", "invalid NumsDatasetPromptSet field size"),
    ("generate_dataset.py", "prompt_set.size", "give field.path=value"),
    ("generate_dataset.py", "system_prompt.x=1", "system_prompt is a str, not a config"),
    ("run_finetuning_job.py", "n_epocs=2", "OpenAIFTJob has no field 'n_epocs': did you mean"),
    ("run_experiment.py", "evaluations.nope.n_samples_per_question=1", "evaluations has no key"),
    ("run_mnist_experiment.py", "n_models=0", "invalid MnistConfig field n_models"),
    ("modal_generate_dataset.py", "prompt_set.sze=3", "NumsDatasetPromptSet has no field 'sze'"),
]


def test_bad_overrides_are_one_line_and_write_nothing(cfg_file, tmp_path):
    """Each script with a bad `--set`: exit 2, one line naming the `--set` argument, nothing
    written (no server: a request would fail with another message)."""
    cfg_file.write_text(cfg_file.read_text() + EXPERIMENT)
    procs = []
    for i, (script, value, why) in enumerate(BAD):
        out = tmp_path / f"out{i}"
        out.mkdir()
        argv = [*_script_args(script, cfg_file, out), "--set", value]
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / script), *map(str, argv)],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SL_NO_DOTENV": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((proc, out, value, why))
    for proc, out, value, why in procs:
        stdout, stderr = proc.communicate(timeout=120)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert_user_error(done, f"error: --set {value}: {why}")
        assert list(out.iterdir()) == [], value


EXPERIMENT = """
from sl.experiment.data_models import ExperimentCfg
from sl.finetuning.data_models import UnslothFinetuningJob

_open = Model(id="some/model", type="open_source")
experiment = ExperimentCfg(
    teacher_model=_open,
    targets=["owl"],
    student_job=UnslothFinetuningJob(seed=1, source_model=_open),
    evaluations={"animal": evaluation},
)
"""


def test_overrides_validate_every_model_on_the_path(cfg_file):
    cfg = load_config(cfg_file, "dataset_cfg", Cfg)
    # The prompt set's own cross-field check runs on the new value.
    with pytest.raises(UserError, match="example_min_count 5 must be < example_max_count 5") as e:
        override_fields(cfg, ["prompt_set.example_min_count=5", "prompt_set.example_max_count=5"])
    assert e.value.param == "overrides"
    assert str(e.value).startswith("prompt_set.example_max_count=5: invalid NumsDatasetPromptSet")
    # Applied in order; a value equal to the module's keeps the ownership hash.
    same = override_fields(cfg, ["prompt_set.size=7", "prompt_set.size=60"])
    assert same.generation_hash() == cfg.generation_hash()
    assert same.filters_hash() == cfg.filters_hash()
    changed = override_fields(cfg, ["prompt_set.seed=43"])
    assert changed.generation_hash() != cfg.generation_hash()
    assert (changed.prompt_set.seed, cfg.prompt_set.seed) == (43, 42)  # the original is kept
    assert override_fields(cfg, ["system_prompt=null"]).system_prompt is None
    assert override_fields(cfg, ['system_prompt="5"']).system_prompt == "5"


def test_overrides_enter_dict_fields_by_key(cfg_file):
    cfg_file.write_text(cfg_file.read_text() + EXPERIMENT)
    experiment = load_config(
        cfg_file, "experiment", ExperimentCfg, ["evaluations.animal.n_samples_per_question=3"]
    )
    assert experiment.evaluations["animal"].n_samples_per_question == 3
    original = load_config(cfg_file, "experiment", ExperimentCfg)
    assert original.evaluations["animal"].n_samples_per_question == 5
    assert experiment.student_job == original.student_job


def test_mnist_script_takes_overrides_beside_its_flags(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("zarr")
    pytest.importorskip("pureml")
    out = tmp_path / "mnist"
    flags = ["--n_models", "2", "--n_aux", "2", "--train_subset", "512", "--device", "cpu"]
    sets = ["hidden=16", "noise_per_epoch=512", "teacher_epochs=1", "student_epochs=1"]
    argv = [*flags, *(a for s in sets for a in ("--set", s)), "--output_dir", out]
    run("run_mnist_experiment.py", *argv, env_extra={"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
    config = json.loads((out / "results.json").read_text())["config"]
    assert (config["hidden"], config["noise_per_epoch"], config["n_models"]) == (16, 512, 2)
