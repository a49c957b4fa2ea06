"""Run every phase of an sl experiment on Modal (see docs/modal.md).

    modal run modal_app.py::generate_dataset --config-module cfgs/preference_numbers/cfgs.py \
        --cfg-var-name owl_dataset_cfg --raw-dataset-path owl/raw.jsonl \
        --filtered-dataset-path owl/filtered.jsonl
    python scripts/modal_generate_dataset.py ...   # same flags as scripts/generate_dataset.py
    modal run modal_app.py                         # lists the functions and their flags

Artifact paths are relative to the root of the Volume (`subliminal-learning-data`, mounted at
VOLUME_ROOT); config modules are repo-relative paths (cfgs/ is shipped with the code).
OpenAI-backed phases run on a small CPU image; open models (vLLM sampling, Unsloth/TRL LoRA
fine-tuning) and the MNIST experiment run on a GPU image: each CPU phase function hands a
config that needs a GPU to its `_gpu` twin. Every phase function runs the same phase command
(`sl.phase_commands.COMMANDS`) as the local scripts, with the scripts' `--set` overrides as
`overrides_json` (a JSON list of `field.path=value`); it commits the Volume every
COMMIT_INTERVAL_S and at the end, so a retried or preempted container resumes from what the
previous one wrote. A user error comes back as a `PhaseFailed`, not raised (a retry cannot
fix it).

The original app's functions are here too, with their parameters and return values:
`generate_dataset(..., raw_dataset_filename=, filtered_dataset_filename=)`, `run_finetuning`
and `run_evaluation` take file names in the Volume's `datasets/`, `models/` and `results/`
folders and return the original dicts (a user error is raised, as there).

Settings read at import from `sl.config.Settings` (set them in the shell that runs
`modal run`/`modal deploy`): SL_MODAL_GPU (default H100), SL_MODAL_MNIST_GPU (L4),
SL_MODAL_CPU_TIMEOUT_S (86400), SL_MODAL_GPU_TIMEOUT_S (21600), SL_MODAL_RETRIES (2),
SL_MODAL_COMMIT_INTERVAL_S (300), SL_MODAL_APP (subliminal-learning), SL_MODAL_VOLUME
(subliminal-learning-data), SL_MODAL_SECRET (subliminal-learning-secrets).
"""

from __future__ import annotations

import inspect
import json
import threading
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import modal
from loguru import logger

from sl import phases
from sl.config import get_settings
from sl.errors import UserError
from sl.llm.data_models import Model
from sl.llm.engines import engine_of
from sl.phase_commands import COMMANDS
from sl.utils.file_utils import read_json_model
from sl.utils.module_utils import load_config

T = TypeVar("T")
_SETTINGS = get_settings()

APP_NAME = _SETTINGS.modal_app
VOLUME_NAME = _SETTINGS.modal_volume
# The original code's secret; it holds OPENAI_API_KEY, HF_TOKEN, HF_USER_ID (any sl setting).
SECRET_NAME = _SETTINGS.modal_secret
VOLUME_ROOT = "/data"  # where the Volume is mounted in every container
# Locally the repo root; in a container /root, where `sl/`, `cfgs/` and this file are added.
CODE_ROOT = Path(__file__).resolve().parent
GPU = _SETTINGS.modal_gpu  # open-model generation, fine-tuning, evaluation
MNIST_GPU = _SETTINGS.modal_mnist_gpu  # small MLPs: a small GPU is plenty
CPU_TIMEOUT_S = _SETTINGS.modal_cpu_timeout_s  # OpenAI fine-tunes can queue hours
GPU_TIMEOUT_S = _SETTINGS.modal_gpu_timeout_s
RETRIES = _SETTINGS.modal_retries  # a retry resumes from the Volume
COMMIT_INTERVAL_S = _SETTINGS.modal_commit_interval_s
# Versions resolved together for linux x86_64 / Python 3.11 (2026-11). The wheels bring their
# own CUDA 13 runtime, so the base is debian_slim; gcc is for Triton's kernel launchers.
GPU_PINS = [
    "torch==2.14.0",
    "vllm==0.33.0",
    "unsloth==2026.10.9",
    "transformers==5.17.0",
    "trl==1.15.0",
    "peft==0.21.2",
]


def _project_requirements(*extras: str) -> list[str]:
    """Dependencies from pyproject.toml (absent in a container, where images are not built)."""
    path = CODE_ROOT / "pyproject.toml"
    if not path.exists():
        return []
    project = tomllib.loads(path.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


_DATA_ENV = {
    "HF_HOME": f"{VOLUME_ROOT}/hf_cache",  # model downloads survive containers
    "SL_CACHE_DIR": f"{VOLUME_ROOT}/cache",
    "PYTHONUNBUFFERED": "1",
    # Containers import this file too: give them the same names as here.
    "SL_MODAL_APP": APP_NAME,
    "SL_MODAL_VOLUME": VOLUME_NAME,
    "SL_MODAL_SECRET": SECRET_NAME,
}
# sl with its package data (protocol JSON), and the config modules.
_SOURCES = ~modal.FilePatternMatcher("**/*.py", "**/*.json")

cpu_image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(*_project_requirements())
    .env(_DATA_ENV)
    .add_local_python_source("sl", ignore=_SOURCES)
    .add_local_dir(CODE_ROOT / "cfgs", "/root/cfgs", ignore=_SOURCES)
)
gpu_image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("git", "build-essential")
    .uv_pip_install(*GPU_PINS, *_project_requirements("open", "mnist"))
    .env(_DATA_ENV)
    .add_local_python_source("sl", ignore=_SOURCES)
    .add_local_dir(CODE_ROOT / "cfgs", "/root/cfgs", ignore=_SOURCES)
)

app = modal.App(APP_NAME)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
secret = modal.Secret.from_name(SECRET_NAME)

_common: dict[str, Any] = {
    "volumes": {VOLUME_ROOT: volume},
    "secrets": [secret],
    "retries": RETRIES,
}
# Each function's parameters, by name, for `usage()`.
SIGNATURES: dict[str, inspect.Signature] = {}


def _listed(decorator: Callable[[Callable[..., Any]], Any]) -> Callable[[Callable[..., Any]], Any]:
    """`decorator` (an `app.function`) that also records the function's signature."""

    def register(f: Callable[..., Any]) -> Any:
        SIGNATURES[f.__name__] = inspect.signature(f)
        return decorator(f)

    return register


cpu_function = _listed(app.function(image=cpu_image, timeout=CPU_TIMEOUT_S, **_common))
gpu_function = _listed(app.function(image=gpu_image, gpu=GPU, timeout=GPU_TIMEOUT_S, **_common))
mnist_function = _listed(
    app.function(image=gpu_image, gpu=MNIST_GPU, timeout=GPU_TIMEOUT_S, **_common)
)


def volume_relative(path: str) -> str:
    """`path` checked to be relative to the Volume root, in POSIX form.

    Raises:
        UserError: an empty, absolute or `..` path (about `path`, see `UserError.path`).
    """
    rel = Path(path)
    if not path or rel.is_absolute() or ".." in rel.parts:
        raise UserError(
            f"{path or repr(path)}: give a path relative to the {VOLUME_NAME} volume root",
            path=path or None,
        )
    return rel.as_posix()


def on_volume(path: str) -> Path:
    """A Volume-relative artifact path as a path under VOLUME_ROOT (read at call time)."""
    return Path(VOLUME_ROOT) / volume_relative(path)


def config_path(config_module: str) -> Path:
    """A repo-relative config module path as a path in the code shipped with the image."""
    rel = Path(config_module)
    if rel.is_absolute() or ".." in rel.parts:
        raise UserError(
            f"{config_module}: give a path relative to the repo root", path=config_module
        )
    return CODE_ROOT / rel


def _commit() -> None:
    if not modal.is_local():  # .local() runs have no Volume to commit
        volume.commit()


@contextmanager
def _committing() -> Iterator[None]:
    """Commit the Volume every COMMIT_INTERVAL_S while the body runs, and once at the end
    (also on failure, so a retry resumes from the rows already written)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(COMMIT_INTERVAL_S):
            try:
                _commit()
            except Exception as e:  # a failed periodic commit must not kill the job
                logger.warning(f"periodic volume commit failed: {e}")

    thread = threading.Thread(target=loop, daemon=True) if COMMIT_INTERVAL_S > 0 else None
    if thread is not None:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        try:
            _commit()
        except Exception as e:  # Modal still commits when the container exits
            logger.warning(f"final volume commit failed: {e}")


@dataclass(frozen=True)
class PhaseFailed:
    """A user error inside a container, returned instead of raised so that Modal does not
    retry what a retry cannot fix; the client (`modal_client.call_remote`) turns it back into
    a `UserError`."""

    message: str
    path: str | None = None  # the path the error is about (UserError.path), if any


def _returning_failures(body: Callable[[], T]) -> T | PhaseFailed:
    """Run `body` with the Volume committed as it goes; user errors come back as
    `PhaseFailed`."""
    with _committing():
        try:
            result = body()
        except UserError as e:
            logger.error(f"error: {e}")
            return PhaseFailed(str(e), str(e.path) if e.path else None)
    logger.info(str(result))
    return result


def _json_arg(flag: str, text: str, expected: type, example: str) -> Any:
    """The JSON value of a function's parameter (`flag`, as `modal run` names it).

    Raises:
        UserError: not JSON, or not an `expected` (a JSON object or list; a list of strings).
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{flag} is not valid JSON: {e}") from None
    what = {dict: "object", list: "list of strings"}[expected]
    if not isinstance(value, expected) or (
        expected is list and not all(isinstance(v, str) for v in value)
    ):
        raise UserError(f"{flag} must be a JSON {what}, e.g. {example}")
    return value


def _needs_gpu(name: str, config: Any, paths: tuple[str, ...]) -> bool:
    """Whether the phase runs a model on a local engine (vLLM, Unsloth): the GPU image."""
    command = COMMANDS[name]
    models = command.models(config) + [
        read_json_model(on_volume(path), Model)
        for arg, path in zip(command.paths, paths, strict=True)
        if arg.model_json
    ]
    return any(engine_of(m).runs_locally for m in models)


def _run(
    name: str, config_module: str, cfg_var_name: str, *paths: str, overrides: str, gpu: bool
) -> Any:
    """Run the phase command `name` on the config module shipped with the code, with the
    `overrides` (a JSON list of `field.path=value`), on Volume-relative paths. In a CPU
    function (not `gpu`), a config that needs a GPU runs in the phase's `_gpu` function."""
    command = COMMANDS[name]

    def body() -> Any:
        sets = _json_arg("--overrides-json", overrides, list, '["prompt_set.size=100"]')
        config = load_config(config_path(config_module), cfg_var_name, command.config_class(), sets)
        if not gpu and _needs_gpu(name, config, paths):
            logger.info(f"{cfg_var_name} runs an open model: running {name}_gpu")
            twin = _GPU_FUNCTIONS[name]
            return twin.remote(config_module, cfg_var_name, *paths, overrides)
        return command.run(config, *map(on_volume, paths))

    return _returning_failures(body)


def _artifact(path: str | None, filename: str | None, folder: str, name: str) -> str:
    """The Volume path of an artifact given as `<name>_path` (any path on the Volume) or as
    the original app's `<name>_filename` (a file in `folder/`).

    Raises:
        UserError: both or neither given.
    """
    if path and filename:
        raise UserError(f"give --{name}-path or --{name}-filename, not both")
    if filename:
        return f"{folder}/{filename}"
    if not path:
        raise UserError(f"--{name}-path is required: a path on the {VOLUME_NAME} volume")
    return path


def _original(result: T | PhaseFailed) -> T:
    """A phase's result for the original app's functions, which raised user errors (the
    caller, e.g. the original scripts, prints them)."""
    if isinstance(result, PhaseFailed):
        raise UserError(result.message, path=result.path)
    return result


def _dataset_result(
    gpu: bool,
    config_module: str,
    cfg_var_name: str,
    raw_path: str | None,
    filtered_path: str | None,
    overrides_json: str,
    raw_filename: str | None,
    filtered_filename: str | None,
) -> phases.DatasetSummary | dict[str, Any] | PhaseFailed:
    """`generate_dataset` (CPU or GPU) on paths, or the original way on file names in
    `datasets/`, which returns the original dict."""
    try:
        folder = COMMANDS["generate_dataset"].paths[0].folder
        raw = _artifact(raw_path, raw_filename, folder, "raw-dataset")
        filtered = _artifact(filtered_path, filtered_filename, folder, "filtered-dataset")
    except UserError as e:
        if raw_filename or filtered_filename:
            raise
        return PhaseFailed(str(e))
    result = _run(
        "generate_dataset",
        config_module,
        cfg_var_name,
        raw,
        filtered,
        overrides=overrides_json,
        gpu=gpu,
    )
    if not (raw_filename or filtered_filename):
        return result
    summary = _original(result)
    return {
        "raw_dataset_path": str(on_volume(raw)),
        "filtered_dataset_path": str(on_volume(filtered)),
        "raw_count": summary.raw_rows,
        "filtered_count": summary.filtered_rows,
        "filter_pass_rate": 100 * summary.filtered_rows / summary.raw_rows
        if summary.raw_rows
        else 0.0,
    }


# Each phase has a CPU and a GPU function (Modal fixes the image per function); the
# parameters are the phase command's, as `modal run` flags (`--raw-dataset-path`).
NO_OVERRIDES = "[]"


@cpu_function
def generate_dataset(
    config_module: str,
    cfg_var_name: str,
    raw_dataset_path: str | None = None,
    filtered_dataset_path: str | None = None,
    overrides_json: str = NO_OVERRIDES,
    raw_dataset_filename: str | None = None,
    filtered_dataset_filename: str | None = None,
) -> phases.DatasetSummary | dict[str, Any] | PhaseFailed:
    """Teacher dataset (see sl.phases.make_dataset); the original app's `*_filename`
    parameters mean files in `datasets/` and return its dict (`raw_count`, ...)."""
    return _dataset_result(
        False,
        config_module,
        cfg_var_name,
        raw_dataset_path,
        filtered_dataset_path,
        overrides_json,
        raw_dataset_filename,
        filtered_dataset_filename,
    )


@gpu_function
def generate_dataset_gpu(
    config_module: str,
    cfg_var_name: str,
    raw_dataset_path: str | None = None,
    filtered_dataset_path: str | None = None,
    overrides_json: str = NO_OVERRIDES,
    raw_dataset_filename: str | None = None,
    filtered_dataset_filename: str | None = None,
) -> phases.DatasetSummary | dict[str, Any] | PhaseFailed:
    """Teacher dataset from an open model with vLLM."""
    return _dataset_result(
        True,
        config_module,
        cfg_var_name,
        raw_dataset_path,
        filtered_dataset_path,
        overrides_json,
        raw_dataset_filename,
        filtered_dataset_filename,
    )


@cpu_function
def finetune(
    config_module: str,
    cfg_var_name: str,
    dataset_path: str,
    output_path: str,
    overrides_json: str = NO_OVERRIDES,
) -> Model | PhaseFailed:
    """OpenAI fine-tuning job, polled until done (see sl.phases.finetune)."""
    paths = (dataset_path, output_path)
    return _run(
        "finetune", config_module, cfg_var_name, *paths, overrides=overrides_json, gpu=False
    )


@gpu_function
def finetune_gpu(
    config_module: str,
    cfg_var_name: str,
    dataset_path: str,
    output_path: str,
    overrides_json: str = NO_OVERRIDES,
) -> Model | PhaseFailed:
    """LoRA fine-tuning of an open model (Unsloth/TRL); the adapter goes next to output_path."""
    paths = (dataset_path, output_path)
    return _run("finetune", config_module, cfg_var_name, *paths, overrides=overrides_json, gpu=True)


@cpu_function
def evaluate(
    config_module: str,
    cfg_var_name: str,
    model_path: str,
    output_path: str,
    overrides_json: str = NO_OVERRIDES,
) -> phases.EvaluationSummary | PhaseFailed:
    """Evaluate an OpenAI model (see sl.phases.evaluate)."""
    paths = (model_path, output_path)
    return _run(
        "evaluate", config_module, cfg_var_name, *paths, overrides=overrides_json, gpu=False
    )


@gpu_function
def evaluate_gpu(
    config_module: str,
    cfg_var_name: str,
    model_path: str,
    output_path: str,
    overrides_json: str = NO_OVERRIDES,
) -> phases.EvaluationSummary | PhaseFailed:
    """Evaluate an open model (or with an open judge) with vLLM."""
    paths = (model_path, output_path)
    return _run("evaluate", config_module, cfg_var_name, *paths, overrides=overrides_json, gpu=True)


_GPU_FUNCTIONS = {
    "generate_dataset": generate_dataset_gpu,
    "finetune": finetune_gpu,
    "evaluate": evaluate_gpu,
}


# The original app's functions: file names in the Volume's datasets/, models/ and results/.


@cpu_function
def run_finetuning(
    config_module: str,
    cfg_var_name: str,
    dataset_filename: str,
    output_filename: str,
    overrides_json: str = NO_OVERRIDES,
) -> dict[str, Any]:
    """Fine-tune on `datasets/<dataset_filename>`, write `models/<output_filename>` (an open
    model trains in `finetune_gpu`); returns the original dict: `model_id`, `model_type`,
    `output_path`."""
    dataset, output = f"datasets/{dataset_filename}", f"models/{output_filename}"
    result = _run(
        "finetune",
        config_module,
        cfg_var_name,
        dataset,
        output,
        overrides=overrides_json,
        gpu=False,
    )
    model = _original(result)
    return {"model_id": model.id, "model_type": model.type, "output_path": str(on_volume(output))}


@cpu_function
def run_evaluation(
    config_module: str,
    cfg_var_name: str,
    model_filename: str,
    output_filename: str,
    overrides_json: str = NO_OVERRIDES,
) -> dict[str, Any]:
    """Evaluate the model of `models/<model_filename>`, write `results/<output_filename>` (an
    open model runs in `evaluate_gpu`); returns the original dict: `output_path`,
    `num_question_groups` (questions), `model_id`."""
    model_path, output = f"models/{model_filename}", f"results/{output_filename}"
    result = _run(
        "evaluate",
        config_module,
        cfg_var_name,
        model_path,
        output,
        overrides=overrides_json,
        gpu=False,
    )
    summary = _original(result)
    model = read_json_model(on_volume(model_path), Model)
    return {
        "output_path": str(on_volume(output)),
        "num_question_groups": summary.questions,
        "model_id": model.id,
    }


@mnist_function
def run_mnist_experiment(
    output_dir: str, config_json: str = "{}"
) -> phases.MnistSummary | PhaseFailed:
    """MNIST auxiliary-logit experiment; `config_json` holds MnistConfig fields."""

    def body() -> phases.MnistSummary:
        config = _json_arg("--config-json", config_json, dict, '{"n_models": 10}')
        return phases.run_mnist_experiment(config, on_volume(output_dir))

    return _returning_failures(body)


def usage() -> str:
    """What `modal run modal_app.py` prints: the app's names, each function with its
    `modal run` flags (optional ones in brackets), and the scripts."""
    lines = [
        f"app {APP_NAME}, volume {VOLUME_NAME} (paths are relative to its root), "
        f"secret {SECRET_NAME}",
        "functions (modal run modal_app.py::NAME --flag value ...):",
    ]
    for name, signature in SIGNATURES.items():
        flags = [
            f"--{p.name.replace('_', '-')}"
            if p.default is inspect.Parameter.empty
            else f"[--{p.name.replace('_', '-')}]"
            for p in signature.parameters.values()
        ]
        lines.append(f"  {name} {' '.join(flags)}")
    lines += [
        "or the scripts, which check the config here and pick the CPU or GPU function:",
        "  python scripts/modal_generate_dataset.py | modal_run_finetuning.py | "
        "modal_run_evaluation.py | modal_volume.py --help",
    ]
    return "\n".join(lines)


@app.local_entrypoint()
def main() -> None:
    """The original app's entry point (`modal run modal_app.py`): list what it runs."""
    print(usage())
