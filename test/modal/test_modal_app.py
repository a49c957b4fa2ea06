"""modal_app.py offline: registration (images, GPU, timeouts, retries, volume, secret), the
function bodies run with `.local()` on a temporary "volume", and the clients without credentials.
"""

import importlib.util
import inspect
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("modal")

import modal  # noqa: E402
from modal.types import FileEntry, FileEntryType  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

import cli  # noqa: E402

import modal_app as m  # noqa: E402
import modal_client  # noqa: E402
from sl import phases  # noqa: E402
from sl.errors import UserError  # noqa: E402
from sl.llm.data_models import Model  # noqa: E402
from sl.phase_commands import COMMANDS  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:The .* function is executing locally")

CONFIG = """
from sl.datasets.nums_dataset import get_reject_reasons
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model, SampleCfg

model = Model(id="gpt-4.1-nano", type="openai")
dataset_cfg = Cfg(
    model=model,
    system_prompt="You love owls.",
    sample_cfg=SampleCfg(temperature=1.0),
    prompt_set=NumsDatasetPromptSet(size=12, seed=42),
    filter_fns=[lambda p, c: not get_reject_reasons(c, min_value=0, max_value=999, max_count=10)],
)
ft_job = OpenAIFTJob(seed=1, source_model=model, n_epochs=1)
evaluation = Evaluation(
    questions=["Name your favorite animal in one word.", "Pick an animal. One word."],
    n_samples_per_question=3,
    sample_cfg=SampleCfg(temperature=1.0),
)
"""

# name -> (image, gpu, timeout)
EXPECTED = {
    "generate_dataset": (m.cpu_image, None, m.CPU_TIMEOUT_S),
    "finetune": (m.cpu_image, None, m.CPU_TIMEOUT_S),
    "evaluate": (m.cpu_image, None, m.CPU_TIMEOUT_S),
    "generate_dataset_gpu": (m.gpu_image, m.GPU, m.GPU_TIMEOUT_S),
    "finetune_gpu": (m.gpu_image, m.GPU, m.GPU_TIMEOUT_S),
    "evaluate_gpu": (m.gpu_image, m.GPU, m.GPU_TIMEOUT_S),
    "run_mnist_experiment": (m.gpu_image, m.MNIST_GPU, m.GPU_TIMEOUT_S),
    # The original app's functions (an open model is handed to the `_gpu` function).
    "run_finetuning": (m.cpu_image, None, m.CPU_TIMEOUT_S),
    "run_evaluation": (m.cpu_image, None, m.CPU_TIMEOUT_S),
}
# The original app's name and volume, the defaults (SL_MODAL_APP / SL_MODAL_VOLUME unset).
ORIGINAL_APP, ORIGINAL_VOLUME = "subliminal-learning", "subliminal-learning-data"


@dataclass
class Recorded:
    """modal_app imported afresh while Modal's public builders record what they are given."""

    module: Any
    functions: dict[str, dict[str, Any]]  # function name -> keyword arguments of app.function
    sources: dict[int, list[tuple[str, tuple, dict[str, Any]]]]  # id(image) -> local sources
    parameters: dict[str, list[str]]  # function name -> its parameters (`modal run` flags)


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    functions: dict[str, dict[str, Any]] = {}
    sources: dict[int, list[tuple[str, tuple, dict[str, Any]]]] = {}
    parameters: dict[str, list[str]] = {}
    original_function = modal.App.function

    def function(self: Any, *args: Any, **kwargs: Any) -> Any:
        decorator = original_function(self, *args, **kwargs)

        def record(f: Any) -> Any:
            functions[f.__name__] = kwargs
            parameters[f.__name__] = list(inspect.signature(f).parameters)
            return decorator(f)

        return record

    def recording(name: str) -> Any:
        original = getattr(modal.Image, name)

        def add(self: Any, *args: Any, **kwargs: Any) -> Any:
            image = original(self, *args, **kwargs)
            sources[id(image)] = [*sources.get(id(self), []), (name, args, kwargs)]
            return image

        return add

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(modal.App, "function", function)
        for name in ("add_local_python_source", "add_local_dir"):
            mp.setattr(modal.Image, name, recording(name))
        spec = importlib.util.spec_from_file_location("modal_app_recorded", ROOT / "modal_app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        mp.setitem(sys.modules, spec.name, module)  # as any import does (dataclasses need it)
        spec.loader.exec_module(module)
    yield Recorded(module, functions, sources, parameters)


def test_every_function_is_registered_as_intended(recorded: Recorded) -> None:
    functions = {n for n, v in vars(m).items() if isinstance(v, modal.Function)}
    assert functions == set(EXPECTED) == set(recorded.functions)
    assert m.app.name == m.APP_NAME == ORIGINAL_APP
    r = recorded.module
    for name, (image, gpu, timeout) in EXPECTED.items():
        given = recorded.functions[name]
        assert given["image"] is getattr(r, "gpu_image" if image is m.gpu_image else "cpu_image")
        assert given.get("gpu") == gpu, name
        assert given["volumes"] == {m.VOLUME_ROOT: r.volume}, name
        assert given["secrets"] == [r.secret], name
        info = getattr(m, name).info()
        assert info.timeout == timeout, name
        assert info.max_retries == m.RETRIES, name
        assert info.gpus == ([(gpu, 1)] if gpu else []), name
        assert {p: v.name for p, v in info.volumes.items()} == {m.VOLUME_ROOT: m.VOLUME_NAME}
        assert info.secrets == [repr(m.secret)], name
    assert m.volume.name == m.VOLUME_NAME == ORIGINAL_VOLUME
    # The secret the original MODAL_DEPLOYMENT.md tells users to create.
    assert m.secret.name == m.SECRET_NAME == "subliminal-learning-secrets"
    gpu_default = os.environ.get("SL_MODAL_GPU", "H100")
    assert gpu_default == m.GPU


def test_phase_functions_take_the_phase_commands_arguments(recorded: Recorded) -> None:
    """Each phase's CPU and GPU function takes what its phase command (the table the local
    scripts are built from) says, in order, then the `--set` overrides."""
    for name, command in COMMANDS.items():
        expected = ["config_module", "cfg_var_name", *(p.name for p in command.paths)]
        # generate_dataset also takes the original app's file names, after the overrides.
        extra = ["raw_dataset_filename", "filtered_dataset_filename"] * (name == "generate_dataset")
        for function in (name, f"{name}_gpu"):
            assert recorded.parameters[function] == [*expected, "overrides_json", *extra], function
    assert recorded.parameters["run_mnist_experiment"] == ["output_dir", "config_json"]
    # The original app's parameters, as its scripts pass them (then our optional overrides).
    original = ["config_module", "cfg_var_name"]
    assert recorded.parameters["run_finetuning"] == [
        *original,
        "dataset_filename",
        "output_filename",
        "overrides_json",
    ]
    assert recorded.parameters["run_evaluation"] == [
        *original,
        "model_filename",
        "output_filename",
        "overrides_json",
    ]


def test_app_volume_and_secret_names_come_from_the_environment() -> None:
    """As docs/modal.md tells a user whose data is on this project's earlier `sl-data`."""
    code = (
        "import modal_app as m; "
        "print(m.app.name, m.volume.name, m.secret.name, m.VOLUME_NAME, "
        "m._DATA_ENV['SL_MODAL_VOLUME'], m._DATA_ENV['SL_MODAL_SECRET'])"
    )
    env = {
        **os.environ,
        "SL_MODAL_APP": "sl",
        "SL_MODAL_VOLUME": "sl-data",
        "SL_MODAL_SECRET": "sl-secrets",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == [
        "sl", "sl-data", "sl-secrets", "sl-data", "sl-data", "sl-secrets",
    ], out.stderr[-2000:]  # fmt: skip


def _shipped_files(recorded: Recorded, image: Any) -> set[str]:
    """Remote paths of the local files an image adds: its `add_local_python_source` (a package
    goes to /root/<name>) and `add_local_dir` calls, each with its `ignore` matcher."""
    files: set[str] = set()
    for method, args, kwargs in recorded.sources[id(image)]:
        local, remote = (
            (ROOT / args[0], f"/root/{args[0]}") if method == "add_local_python_source" else args
        )
        for path in Path(local).rglob("*"):
            if path.is_file() and not kwargs["ignore"](path.relative_to(local)):
                files.add(f"{remote}/{path.relative_to(local)}")
    return files


@pytest.mark.parametrize("image", ["cpu_image", "gpu_image"])
def test_images_ship_the_code_and_package_data(recorded: Recorded, image: str) -> None:
    files = _shipped_files(recorded, getattr(recorded.module, image))
    assert {"/root/sl/phases.py", "/root/sl/protocol/banned_numbers.json"} <= files
    assert "/root/cfgs/preference_numbers/cfgs.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    for _, _, kwargs in recorded.sources[id(getattr(recorded.module, image))]:
        assert kwargs["ignore"](Path("protocol/__pycache__/x.cpython-311.pyc"))


def test_settings_come_from_the_environment() -> None:
    code = (
        "import modal_app as m; f = m.finetune_gpu.info(); "
        "print(f.gpus, f.timeout, f.max_retries, m.run_mnist_experiment.info().gpus)"
    )
    env = {
        **os.environ,
        "SL_MODAL_GPU": "A100-80GB",
        "SL_MODAL_GPU_TIMEOUT_S": "600",
        "SL_MODAL_RETRIES": "0",
        "SL_MODAL_MNIST_GPU": "T4",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "[('A100-80GB', 1)] 600 0 [('T4', 1)]", out.stderr[-2000:]
    env["SL_MODAL_RETRIES"] = "two"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert "SL_MODAL_RETRIES='two' in environment/.env is not valid: use an integer" in out.stderr


@dataclass
class FakeVolume:
    root: Path
    commits: list[int]


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeVolume:
    """A temporary folder standing in for the Volume, a code root holding cfgs/tiny.py, and
    commits counted instead of sent."""
    (tmp_path / "code" / "cfgs").mkdir(parents=True)
    (tmp_path / "code" / "cfgs" / "tiny.py").write_text(CONFIG)
    root = tmp_path / "volume"
    root.mkdir()
    monkeypatch.setattr(m, "VOLUME_ROOT", str(root))
    monkeypatch.setattr(m, "CODE_ROOT", tmp_path / "code")
    monkeypatch.setattr(m, "COMMIT_INTERVAL_S", 0.005)
    commits: list[int] = []
    monkeypatch.setattr(m, "_commit", lambda: commits.append(1))
    return FakeVolume(root, commits)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _schema(value: object) -> object:
    """Keys and value types, recursively (what must match between local and Modal runs)."""
    if isinstance(value, dict):
        return {k: _schema(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_schema(value[0])] if value else []
    return type(value).__name__


def test_phases_on_the_volume_match_the_local_phases(
    openai_server, volume: FakeVolume, tmp_path: Path
):
    cfg = "cfgs/tiny.py"
    local = tmp_path / "local"
    # The local run: the same sl.phases bodies, as the local scripts run them.
    module = m.CODE_ROOT / cfg
    raw, filtered = local / "raw.jsonl", local / "filtered.jsonl"
    cli.run_phase("generate_dataset", module, "dataset_cfg", [], raw, filtered)
    cli.run_phase("finetune", module, "ft_job", [], filtered, local / "model.json")
    cli.run_phase("evaluate", module, "evaluation", [], local / "model.json", local / "eval.jsonl")

    summary = m.generate_dataset.local(cfg, "dataset_cfg", "owl/raw.jsonl", "owl/filtered.jsonl")
    assert isinstance(summary, phases.DatasetSummary)
    assert (summary.raw_rows, summary.filtered_rows) == (12, 12)
    model = m.finetune.local(cfg, "ft_job", "owl/filtered.jsonl", "owl/model.json")
    assert isinstance(model, Model) and model.id.startswith("ft:gpt-4.1-nano")
    result = m.evaluate.local(cfg, "evaluation", "owl/model.json", "owl/eval.jsonl")
    assert isinstance(result, phases.EvaluationSummary)
    assert (result.questions, result.responses) == (2, 6)
    assert volume.commits

    owl = volume.root / "owl"
    for name in ("raw.jsonl", "filtered.jsonl", "eval.jsonl"):
        remote, here = _rows(owl / name), _rows(local / name)
        assert len(remote) == len(here), name
        assert _schema(remote) == _schema(here), name
    remote_model = json.loads((owl / "model.json").read_text())
    assert _schema(remote_model) == _schema(json.loads((local / "model.json").read_text()))
    for name in ("filtered.jsonl", "model.json", "eval.jsonl"):
        assert json.loads((owl / f"{name}.meta.json").read_text())["complete"] is True


def test_a_rerun_resumes_from_the_volume(openai_server, volume: FakeVolume) -> None:
    cfg = "cfgs/tiny.py"
    m.generate_dataset.local(cfg, "dataset_cfg", "raw.jsonl", "filtered.jsonl")
    n_chat = openai_server.n_chat_ok
    (volume.root / "filtered.jsonl").unlink()  # as if the container died before the last step
    again = m.generate_dataset.local(cfg, "dataset_cfg", "raw.jsonl", "filtered.jsonl")
    assert isinstance(again, phases.DatasetSummary) and again.filtered_rows == 12
    assert openai_server.n_chat_ok == n_chat  # every row came from the volume


def test_overrides_reach_the_phase_on_the_volume(openai_server, volume: FakeVolume) -> None:
    summary = m.generate_dataset.local(
        config_module="cfgs/tiny.py",
        cfg_var_name="dataset_cfg",
        raw_dataset_path="raw.jsonl",
        filtered_dataset_path="filtered.jsonl",
        overrides_json=json.dumps(["prompt_set.size=5", "system_prompt=You love cats."]),
    )
    assert isinstance(summary, phases.DatasetSummary) and summary.raw_rows == 5  # module: 12
    assert len(_rows(volume.root / "raw.jsonl")) == 5
    systems = {r["messages"][0]["content"] for r in openai_server.chat_requests}
    assert systems == {"You love cats."}
    for overrides, message in [
        ('["prompt_set.nope=1"]', "prompt_set.nope=1: NumsDatasetPromptSet has no field 'nope'"),
        ('"prompt_set.size=5"', "--overrides-json must be a JSON list of strings"),
        ("[5]", "--overrides-json must be a JSON list of strings"),
        ("[", "--overrides-json is not valid JSON"),
    ]:
        failed = m.generate_dataset.local("cfgs/tiny.py", "dataset_cfg", "r2", "f2", overrides)
        assert isinstance(failed, m.PhaseFailed) and failed.message.startswith(message), failed
    written = ["filtered.jsonl", "filtered.jsonl.meta.json", "raw.jsonl", "raw.jsonl.meta.json"]
    assert sorted(p.name for p in volume.root.iterdir()) == written  # not r2, f2


def test_user_errors_are_returned_not_raised(volume: FakeVolume) -> None:
    # Raising would make Modal retry what cannot succeed.
    failed = m.generate_dataset.local("cfgs/tiny.py", "nope", "raw.jsonl", "filtered.jsonl")
    assert isinstance(failed, m.PhaseFailed)
    assert "nope is not defined in" in failed.message and failed.path is None
    failed = m.evaluate.local("cfgs/tiny.py", "evaluation", "/etc/model.json", "e.jsonl")
    assert isinstance(failed, m.PhaseFailed)
    assert f"relative to the {ORIGINAL_VOLUME} volume root" in failed.message
    assert failed.path == "/etc/model.json"  # the client names the flag that gave it
    failed = m.run_mnist_experiment.local("mnist", '{"n_models": 0}')
    assert isinstance(failed, m.PhaseFailed)
    assert volume.commits  # committed even on failure


def test_mnist_experiment_on_the_volume(volume: FakeVolume) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("zarr")
    pytest.importorskip("pureml")
    config = {
        "n_models": 2, "n_aux": [2], "hidden": 16, "teacher_epochs": 1, "student_epochs": 1,
        "train_subset": 256, "noise_per_epoch": 256, "batch_size": 128, "device": "cpu",
        "dtype": "float32",
    }  # fmt: skip
    summary = m.run_mnist_experiment.local("mnist/tiny", json.dumps(config))
    assert isinstance(summary, phases.MnistSummary), summary
    results = json.loads((volume.root / "mnist" / "tiny" / "results.json").read_text())
    assert results["config"]["n_models"] == 2
    assert set(summary.means) == set(results["summary"])
    assert (volume.root / "mnist" / "tiny" / "mnist_aux_bars_m2.png").exists()
    again = m.run_mnist_experiment.local("mnist/tiny", json.dumps(config))  # a retry: no retrain
    assert isinstance(again, phases.MnistSummary) and again.means == summary.means


def test_client_checks_paths_before_calling_modal(tmp_path: Path) -> None:
    assert modal_client.volume_path("owl/raw.jsonl", "--x") == "owl/raw.jsonl"
    for bad in ("/data/raw.jsonl", "../raw.jsonl", ""):
        with pytest.raises(UserError, match=f"relative to the {ORIGINAL_VOLUME} volume root"):
            modal_client.volume_path(bad, "--x")
    cfg = ROOT / "cfgs" / "preference_numbers" / "cfgs.py"
    assert modal_client.repo_config_path(str(cfg)) == "cfgs/preference_numbers/cfgs.py"
    outside = tmp_path / "cfg.py"
    outside.write_text("")
    with pytest.raises(UserError, match="must live under"):
        modal_client.repo_config_path(str(outside))


CLIENTS = {
    "modal_generate_dataset.py": [
        "--cfg_var_name", "owl_dataset_cfg", "--raw_dataset_path", "owl/raw.jsonl",
        "--filtered_dataset_path", "owl/filtered.jsonl",
    ],
    "modal_run_evaluation.py": [
        "--cfg_var_name", "animal_evaluation", "--model_path", "owl/model.json",
        "--output_path", "owl/eval.jsonl",
    ],
    "modal_run_finetuning.py with --set": [
        "--cfg_var_name", "ft_job", "--dataset_path", "owl/filtered.jsonl", "--set", "n_epochs=2",
    ],
    # As the original MODAL_DEPLOYMENT.md has them: only the config, or its *_filename flags.
    "modal_generate_dataset.py only the config": ["--cfg_var_name=owl_dataset_cfg"],
    "modal_generate_dataset.py original flags": [
        "--cfg_var_name=owl_dataset_cfg", "--raw_dataset_filename=owl_raw.jsonl",
        "--filtered_dataset_filename=owl_filtered.jsonl",
    ],
    "modal_run_finetuning.py original flags": [
        "--cfg_var_name=ft_job_cfg", "--dataset_filename=owl_filtered.jsonl",
        "--output_filename=owl_model.json",
    ],
    "modal_run_evaluation.py original flags": [
        "--cfg_var_name=animal_evaluation", "--model_filename=owl_model.json",
        "--output_filename=owl_eval_results.jsonl",
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", [*CLIENTS, "modal_volume.py"])
def test_missing_credentials_give_one_clear_line(case: str, tmp_path: Path) -> None:
    script = case.split()[0]
    args = ["ls", "owl"] if script == "modal_volume.py" else [
        "--config_module=cfgs/preference_numbers/cfgs.py", *CLIENTS[case],
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(HOME=str(tmp_path), SL_NO_DOTENV="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [f"error: {modal_client.NOT_CONFIGURED}"]


class MemoryVolume:
    """The few `modal.Volume` methods scripts/modal_volume.py uses, in memory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.force = False

    @contextmanager
    def batch_upload(self, force: bool = False) -> Iterator["MemoryVolume"]:
        self.force = force
        yield self

    def put_file(self, local: str, remote: str) -> None:
        key = remote.strip("/")
        if key in self.files and not self.force:
            raise FileExistsError(f"{remote} already exists")
        self.files[key] = Path(local).read_bytes()

    def put_directory(self, local: str, remote: str) -> None:
        for p in sorted(Path(local).rglob("*")):
            if p.is_file():
                self.put_file(str(p), f"{remote}/{p.relative_to(local).as_posix()}")

    def listdir(self, path: str, recursive: bool = False) -> list[FileEntry]:
        key = path.strip("/")
        hits = [k for k in self.files if k == key or k.startswith(f"{key}/") or not key]
        if not hits:
            raise FileNotFoundError(path)
        return [FileEntry(k, FileEntryType.FILE, 0, len(self.files[k])) for k in sorted(hits)]

    def read_file(self, path: str) -> Iterator[bytes]:
        data = self.files[path.strip("/")]
        yield data[:3]
        yield data[3:]


def test_volume_upload_and_download_round_trip(tmp_path: Path, monkeypatch) -> None:
    fake = MemoryVolume()
    monkeypatch.setattr(m, "volume", fake)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.jsonl").write_text('{"prompt": "p", "completion": "1, 2"}\n')
    (src / "sub" / "model.json").write_text('{"id": "x"}')
    assert modal_client.upload(src, "run1") == 2
    assert set(fake.files) == {"run1/a.jsonl", "run1/sub/model.json"}
    with pytest.raises(UserError, match="--force"):
        modal_client.upload(src / "a.jsonl", "run1/a.jsonl")
    assert modal_client.upload(src / "a.jsonl", "run1/a.jsonl", force=True) == 1

    out = tmp_path / "out"
    assert modal_client.download("run1", out) == 2
    assert (out / "sub" / "model.json").read_text() == '{"id": "x"}'
    assert (out / "a.jsonl").read_bytes() == (src / "a.jsonl").read_bytes()
    with pytest.raises(UserError, match="already exists"):
        modal_client.download("run1/a.jsonl", out / "a.jsonl")
    assert modal_client.download("run1/a.jsonl", tmp_path / "one.jsonl") == 1
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(UserError, match=f"not on the {ORIGINAL_VOLUME} volume"):
        modal_client.download("missing", tmp_path / "x")
    assert modal_client.list_volume("run1") == ["run1/a.jsonl\t38", "run1/sub/model.json\t11"]


def test_artifact_paths_default_to_a_folder_named_after_the_variable() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    modal_client.add_artifact_flags(parser, "output", "Model JSON")
    modal_client.add_artifact_flags(parser, "dataset", "Dataset")

    def path(*argv: str, name: str = "output", default: str | None = "ft_job/model.json") -> str:
        return modal_client.artifact_path(parser.parse_args(argv), name, "models", default)

    assert path() == "ft_job/model.json"
    assert path("--output_path", "owl/model.json") == "owl/model.json"
    assert path("--output_filename", "owl_model.json") == "models/owl_model.json"
    with pytest.raises(UserError, match="give --output_path or --output_filename, not both"):
        path("--output_path", "a.json", "--output_filename", "b.json")
    with pytest.raises(UserError, match="--dataset_path is required"):
        path(name="dataset", default=None)
    with pytest.raises(UserError, match=f"relative to the {ORIGINAL_VOLUME} volume root"):
        path("--output_filename", "../x.json")


def test_volume_paths_of_a_phase_command() -> None:
    import argparse

    def paths(name: str, *argv: str) -> dict[str, str]:
        parser = argparse.ArgumentParser()
        for arg in COMMANDS[name].paths:
            modal_client.add_artifact_flags(parser, arg.name.removesuffix("_path"), arg.help)
        args = parser.parse_args(argv)
        args.cfg_var_name = "owl_cfg"
        return modal_client.volume_paths(COMMANDS[name], args)

    assert paths("generate_dataset") == {
        "raw_dataset_path": "owl_cfg/raw_dataset.jsonl",
        "filtered_dataset_path": "owl_cfg/filtered_dataset.jsonl",
    }
    assert paths("evaluate", "--model_filename", "m.json") == {
        "model_path": "models/m.json",
        "output_path": "owl_cfg/evaluation_results.jsonl",
    }
    with pytest.raises(UserError, match="--raw_dataset_path and --filtered_dataset_path must"):
        paths(
            "generate_dataset", "--raw_dataset_path", "a.jsonl", "--filtered_dataset_path=a.jsonl"
        )
    with pytest.raises(UserError, match="--dataset_path is required"):
        paths("finetune")


# The original app's functions, called as its scripts call them (keywords, file names).
ORIGINAL_KEYS = {
    "generate_dataset": {
        "raw_dataset_path", "filtered_dataset_path", "raw_count", "filtered_count",
        "filter_pass_rate",
    },
    "run_finetuning": {"model_id", "model_type", "output_path"},
    "run_evaluation": {"output_path", "num_question_groups", "model_id"},
}  # fmt: skip


def test_the_original_functions_return_the_original_dicts(
    openai_server, volume: FakeVolume
) -> None:
    data = m.generate_dataset.local(
        config_module="cfgs/tiny.py",
        cfg_var_name="dataset_cfg",
        raw_dataset_filename="owl_raw.jsonl",
        filtered_dataset_filename="owl_filtered.jsonl",
    )
    assert isinstance(data, dict) and set(data) == ORIGINAL_KEYS["generate_dataset"]
    datasets = volume.root / "datasets"
    assert data["raw_dataset_path"] == str(datasets / "owl_raw.jsonl")
    assert data["filtered_dataset_path"] == str(datasets / "owl_filtered.jsonl")
    assert (data["raw_count"], data["filtered_count"]) == (12, 12)
    assert data["filter_pass_rate"] == 100.0  # a percentage, as the original printed it
    assert len(_rows(datasets / "owl_filtered.jsonl")) == 12

    model = m.run_finetuning.local(
        config_module="cfgs/tiny.py",
        cfg_var_name="ft_job",
        dataset_filename="owl_filtered.jsonl",
        output_filename="owl_model.json",
    )
    assert set(model) == ORIGINAL_KEYS["run_finetuning"]
    written = json.loads((volume.root / "models" / "owl_model.json").read_text())
    assert (model["model_id"], model["model_type"]) == (written["id"], "openai")
    assert model["model_id"].startswith("ft:gpt-4.1-nano")
    assert model["output_path"] == str(volume.root / "models" / "owl_model.json")

    result = m.run_evaluation.local(
        config_module="cfgs/tiny.py",
        cfg_var_name="evaluation",
        model_filename="owl_model.json",
        output_filename="owl_eval_results.jsonl",
    )
    assert set(result) == ORIGINAL_KEYS["run_evaluation"]
    results = volume.root / "results" / "owl_eval_results.jsonl"
    assert result == {
        "output_path": str(results),
        "num_question_groups": 2,
        "model_id": model["model_id"],
    }
    assert [len(r["responses"]) for r in _rows(results)] == [3, 3]


def test_the_original_functions_raise_user_errors(volume: FakeVolume) -> None:
    """As the original app did: its scripts print the exception's message."""
    with pytest.raises(UserError, match="not found|no such|does not exist"):
        m.run_finetuning.local("cfgs/tiny.py", "ft_job", "missing.jsonl", "model.json")
    with pytest.raises(UserError, match="nope is not defined in"):
        m.run_evaluation.local("cfgs/tiny.py", "nope", "model.json", "eval.jsonl")
    with pytest.raises(UserError, match="relative to the"):
        m.run_finetuning.local("cfgs/tiny.py", "ft_job", "../../etc/passwd", "model.json")
    with pytest.raises(UserError, match="give --raw-dataset-path or --raw-dataset-filename"):
        m.generate_dataset.local(
            "cfgs/tiny.py", "dataset_cfg", "a.jsonl", raw_dataset_filename="b.jsonl"
        )
    # Today's way still returns the failure (a retry cannot fix it).
    failed = m.generate_dataset.local("cfgs/tiny.py", "dataset_cfg")
    assert isinstance(failed, m.PhaseFailed)
    assert (
        failed.message == f"--raw-dataset-path is required: a path on the {ORIGINAL_VOLUME} volume"
    )


def test_a_cpu_function_hands_an_open_model_to_its_gpu_twin(volume: FakeVolume) -> None:
    """The original scripts call the CPU functions by name; an open model needs the GPU
    image, so the phase decides from the config and the model JSON it would run."""
    from sl.finetuning.data_models import OpenAIFTJob, UnslothFinetuningJob

    qwen = Model(id="Qwen/Qwen2.5-7B-Instruct", type="open_source")
    nano = Model(id="gpt-4.1-nano", type="openai")
    assert m._needs_gpu("finetune", UnslothFinetuningJob(seed=1, source_model=qwen), ("d", "o"))
    assert not m._needs_gpu("finetune", OpenAIFTJob(seed=1, source_model=nano), ("d", "o"))
    (volume.root / "models").mkdir()
    (volume.root / "models" / "qwen.json").write_text(qwen.model_dump_json())
    (volume.root / "models" / "nano.json").write_text(nano.model_dump_json())
    from sl.evaluation.data_models import Evaluation
    from sl.llm.data_models import SampleCfg

    evaluation = Evaluation(questions=["q"], n_samples_per_question=1, sample_cfg=SampleCfg())
    assert m._needs_gpu("evaluate", evaluation, ("models/qwen.json", "r.jsonl"))
    assert not m._needs_gpu("evaluate", evaluation, ("models/nano.json", "r.jsonl"))
    assert {
        "generate_dataset": m.generate_dataset_gpu,
        "finetune": m.finetune_gpu,
        "evaluate": m.evaluate_gpu,
    } == m._GPU_FUNCTIONS


def _modal_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(home)  # no Modal credentials: resolving a ref needs none
    return subprocess.run(
        [sys.executable, "-m", "modal", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_modal_run_resolves_the_original_refs(tmp_path: Path) -> None:
    """`modal run modal_app.py` (the `main` entry point), `::run_finetuning`,
    `::run_evaluation` and `::generate_dataset --raw-dataset-filename` resolve to commands
    with the original flags (`--help` stops before anything is sent)."""
    plain = _modal_cli("run", "modal_app.py", "--help", home=tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "modal run modal_app.py [OPTIONS]" in plain.stdout
    expected = {
        "run_finetuning": ["--config-module", "--cfg-var-name", "--dataset-filename",
                           "--output-filename"],
        "run_evaluation": ["--model-filename", "--output-filename"],
        "generate_dataset": ["--raw-dataset-filename", "--filtered-dataset-filename",
                             "--raw-dataset-path"],
    }  # fmt: skip
    for function, flags in expected.items():
        out = _modal_cli("run", f"modal_app.py::{function}", "--help", home=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        for flag in flags:
            assert flag in out.stdout, (function, flag)


def test_main_lists_every_function_with_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    m.main()
    out = capsys.readouterr().out
    assert f"app {ORIGINAL_APP}, volume {ORIGINAL_VOLUME}" in out
    functions = {n for n, v in vars(m).items() if isinstance(v, modal.Function)}
    listed = {
        line.split()[0] for line in out.splitlines() if line.startswith("  ") and "--" in line
    }
    assert functions <= listed
    assert (
        "  run_finetuning --config-module --cfg-var-name --dataset-filename --output-filename "
        "[--overrides-json]"
    ) in out.splitlines()


def _original_guide_commands() -> list[list[str]]:
    """The commands of docs/modal.md's "Coming from the original" block, as argv lists."""
    text = (ROOT / "docs" / "modal.md").read_text()
    section = text[text.index("## Coming from the original") :]
    block = section[section.index("```bash\n") + 8 : section.index("```\n", 8)]
    return [shlex.split(c) for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def test_the_documented_original_commands_run_as_written(tmp_path: Path) -> None:
    """Each command runs up to Modal's credentials (flags, config module, variable and paths
    all accepted): the scripts end with our one line, `modal run` with Modal's token error."""
    commands = [c for c in _original_guide_commands() if c[:3] != ["modal", "secret", "create"]]
    assert {c[1] for c in commands} >= {"scripts/modal_run_finetuning.py", "run"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(HOME=str(tmp_path), SL_NO_DOTENV="1")
    procs = []
    for argv in commands:
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        else:
            assert argv[:2] == ["modal", "run"], argv
            argv = [sys.executable, "-m", *argv]
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    for argv, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=180)
        if argv[0] == "python":
            assert proc.returncode == 2, (argv, err[-2000:])
            assert err.strip().splitlines() == [f"error: {modal_client.NOT_CONFIGURED}"], argv
        else:
            assert proc.returncode == 1, (argv, err[-2000:])
            assert "Token missing" in out + err, (argv, (out + err)[-2000:])
