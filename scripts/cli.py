"""What every script shares: flags, config modules, and errors that end in one line.

The library's errors name paths and arguments; the scripts name their flags. `naming_flags`
turns an error about a path a flag gave (`UserError.path`) into one that names the flag as
well: `data/x.jsonl is a folder: ...` becomes `--output_path data/x.jsonl is a folder: ...`;
`naming_params` turns one about an argument (`UserError.param`) into one about its flag:
`control ctrl: ...` becomes `--control ctrl: ...`.
The phase commands below (config module + paths → `sl.phases` → summary) are what the
phase scripts run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from loguru import logger

from sl import phases
from sl.config import get_settings
from sl.errors import RemoteError, UserError
from sl.llm.data_models import Model
from sl.llm.driver import SampleError
from sl.utils.file_utils import read_json_model
from sl.utils.module_utils import exec_file, load_module, module_variable
from sl.utils.optional_deps import install_hint

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]


def flag_error(error: UserError, flags: dict[str, Path | str | None]) -> UserError | None:
    """`error` naming the flag that gave its path (`flags`: flag → the path it gave; a path
    under a folder flag counts as given by it), or None when no flag gave it."""
    if error.path is None:
        return None
    for flag, value in flags.items():
        if value is None:
            continue
        given = Path(value)
        if error.path == given or given in error.path.parents:
            return UserError(f"{flag} {error}", path=error.path)
    return None


@contextmanager
def naming_flags(**flags: Path | str | None) -> Iterator[None]:
    """Within the block, errors about a path given by `--<name>` (a keyword here) name it."""
    try:
        yield
    except UserError as e:
        named = flag_error(e, {f"--{name}": value for name, value in flags.items()})
        if named is None:
            raise
        raise named from e


@contextmanager
def naming_params(*names: str) -> Iterator[None]:
    """Within the block, an error about the library argument `name` (`UserError.param`, one of
    `names`) names the flag `--<name>`: its message starts with the argument's name."""
    try:
        yield
    except UserError as e:
        if e.param not in names or not str(e).startswith(e.param):
            raise
        raise UserError(f"--{e}", path=e.path, param=e.param) from e


def load_config(config_module: str | Path, cfg_var_name: str, expected: type[T]) -> T:
    """The variable `--cfg_var_name` of the file `--config_module`, checked by type."""
    with naming_flags(config_module=config_module):
        module = load_module(config_module)
    try:
        return module_variable(module, cfg_var_name, expected, config_module)
    except UserError as e:
        raise UserError(f"--cfg_var_name {e}") from e


def generate_dataset(
    config_module: str | Path,
    cfg_var_name: str,
    raw_dataset_path: Path,
    filtered_dataset_path: Path,
) -> phases.DatasetSummary:
    """`phases.make_dataset` for the `Cfg` named `cfg_var_name` in a config module file."""
    from sl.datasets.services import Cfg

    cfg = load_config(config_module, cfg_var_name, Cfg)
    with naming_flags(
        raw_dataset_path=raw_dataset_path, filtered_dataset_path=filtered_dataset_path
    ):
        return asyncio.run(phases.make_dataset(cfg, raw_dataset_path, filtered_dataset_path))


def finetune(
    config_module: str | Path, cfg_var_name: str, dataset_path: Path, output_path: Path
) -> Model:
    """`phases.finetune` for the `FTJob` named `cfg_var_name` in a config module file."""
    from sl.finetuning.data_models import FTJob

    job = load_config(config_module, cfg_var_name, FTJob)
    with naming_flags(dataset_path=dataset_path, output_path=output_path):
        return asyncio.run(phases.finetune(job, dataset_path, output_path))


def evaluate(
    config_module: str | Path, cfg_var_name: str, model_path: Path, output_path: Path
) -> phases.EvaluationSummary:
    """`phases.evaluate` for the `Evaluation` named `cfg_var_name` and the model JSON."""
    from sl.evaluation.data_models import Evaluation

    evaluation = load_config(config_module, cfg_var_name, Evaluation)
    with naming_flags(model_path=model_path, output_path=output_path):
        model = read_json_model(model_path, Model)
        return asyncio.run(phases.evaluate(evaluation, model, output_path))


def repo_module(name: str) -> ModuleType:
    """Import `<repo root>/<name>.py` (e.g. `modal_client`, which lives beside
    `modal_app.py`) by its path, once per process."""
    path = REPO_ROOT / f"{name}.py"
    if name not in sys.modules and not path.exists():
        raise UserError(f"{path} not found: run the scripts from a clone of the repo")
    return exec_file(path, name, register=True)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the script's docstring as help and bad flags reported in one line."""

    def __init__(self, doc: str | None = None, **kwargs: Any):
        kwargs.setdefault("description", doc)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def config_parser(doc: str | None) -> ArgumentParser:
    """A parser with the --config_module/--cfg_var_name pair every phase script takes."""
    parser = ArgumentParser(doc)
    parser.add_argument("--config_module", required=True, help="Path to a config .py file")
    parser.add_argument("--cfg_var_name", required=True, help="Variable in that module")
    return parser


def modal_phase_args(
    doc: str | None, expected: type[T], artifacts: dict[str, str]
) -> tuple[argparse.Namespace, T]:
    """The flags of a `scripts/modal_*.py` phase script, parsed, and its config, loaded and
    checked here rather than remotely: the config pair, `--<name>_path` / `--<name>_filename`
    for each of `artifacts` (name -> help) and --detach. `args.config_path` is the config
    module relative to the repo root (it must live under cfgs/, which Modal ships)."""
    modal_client = repo_module("modal_client")
    parser = config_parser(doc)
    for name, what in artifacts.items():
        modal_client.add_artifact_flags(parser, name, what)
    parser.add_argument("--detach", action="store_true", help="Keep running if this exits")
    args = parser.parse_args()
    cfg = load_config(args.config_module, args.cfg_var_name, expected)
    with naming_flags(config_module=args.config_module):
        args.config_path = modal_client.repo_config_path(args.config_module)
    return args, cfg


def call_modal_phase(function: str, gpu: bool, args: argparse.Namespace, **paths: str) -> Any:
    """Run `modal_app.<function>` (`<function>_gpu` on the GPU image) on the config of
    `modal_phase_args` and the Volume `paths` (flag name -> path, in the function's order);
    an error about one of them names its flag."""
    modal_client = repo_module("modal_client")
    app = modal_client.load_modal_app()
    name = f"{function}_gpu" if gpu else function
    with naming_flags(**{flag: app.on_volume(path) for flag, path in paths.items()}):
        return modal_client.call_remote(
            name, args.config_path, args.cfg_var_name, *paths.values(), detach=args.detach
        )


RESUMES = "interrupted: rerun the same command to resume"
RESTARTS = "interrupted: this run does not resume; a rerun starts it over"


def _to_stderr(message: str) -> None:
    sys.stderr.write(message)  # whatever sys.stderr is now (tests capture it)


def _setup_logging() -> None:
    """Check every setting (a bad one is a UserError naming its variable) and log to stderr
    at SL_LOG_LEVEL (INFO by default; DEBUG shows the tracebacks behind errors)."""
    level = get_settings().log_level
    logger.remove()
    logger.add(_to_stderr, level=level)


def run_script(main: Callable[[], Any], interrupted: str = RESUMES) -> None:
    """Run a script's main(); every error ends as one line on stderr with a non-zero exit
    code: 2 for user errors, 1 for failed requests or remote jobs and for bugs (whose
    traceback is logged at DEBUG: set SL_LOG_LEVEL=DEBUG to see it). `interrupted` is the
    line printed on Ctrl-C. Settings are checked first, before any request or output."""
    try:
        _setup_logging()
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (SampleError, RemoteError) as e:
        logger.opt(exception=e).debug("failed")
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as e:
        hint = install_hint(e.name)
        if hint is None:  # not an optional dependency: a bug
            logger.opt(exception=e).debug("unexpected error")
            print(f"error: unexpected ModuleNotFoundError: {e} (a bug: rerun with "
                  "SL_LOG_LEVEL=DEBUG for the traceback and report it)", file=sys.stderr)  # fmt: skip
            sys.exit(1)
        print(f"error: {hint}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        logger.opt(exception=e).debug("unexpected error")
        message = str(e).splitlines()[0] if str(e) else ""
        print(
            f"error: unexpected {type(e).__name__}: {message} (a bug: rerun with "
            f"SL_LOG_LEVEL=DEBUG for the traceback and report it)",
            file=sys.stderr,
        )
        sys.exit(1)
