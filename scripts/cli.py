"""What every script shares: flags, config modules, and errors that end in one line.

The library's errors name paths and arguments; the scripts name their flags. `naming_flags`
turns an error about a path a flag gave (`UserError.path`) into one that names the flag as
well: `data/x.jsonl is a folder: ...` becomes `--output_path data/x.jsonl is a folder: ...`;
`naming_params` turns one about an argument (`UserError.param`) into one about its flag:
`control ctrl: ...` becomes `--control ctrl: ...`.
The phase scripts, local and Modal, are built from `sl.phase_commands.COMMANDS` (config
module + paths → `sl.phases` → summary): `phase_script` and `modal_phase_script`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from loguru import logger

from sl.errors import RemoteError, UserError
from sl.llm.data_models import Model
from sl.llm.driver import SampleError
from sl.phase_commands import COMMANDS
from sl.utils import module_utils
from sl.utils.logging_setup import setup_logging
from sl.utils.module_utils import exec_file
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


# The flags of `module_utils.load_config`'s arguments (`UserError.param`).
_CONFIG_FLAGS = {"var_name": "--cfg_var_name", "overrides": "--set"}


@contextmanager
def naming_config_flags() -> Iterator[None]:
    """Within the block, an error of `module_utils.load_config` about its variable or an
    override names `--cfg_var_name` or `--set`: `--set prompt_set.size=abc: invalid ...`."""
    try:
        yield
    except UserError as e:
        if e.param not in _CONFIG_FLAGS:
            raise
        raise UserError(f"{_CONFIG_FLAGS[e.param]} {e}") from e


def load_config(
    config_module: str | Path, cfg_var_name: str, expected: type[T], overrides: Sequence[str] = ()
) -> T:
    """`module_utils.load_config` of `--config_module`, `--cfg_var_name` and the `--set`
    overrides; an error names the flag it is about."""
    with naming_config_flags(), naming_flags(config_module=config_module):
        return module_utils.load_config(config_module, cfg_var_name, expected, overrides)


def run_phase(
    name: str,
    config_module: str | Path,
    cfg_var_name: str,
    overrides: Sequence[str],
    *paths: Path,
) -> Any:
    """Run the phase command `name` (`sl.phase_commands.COMMANDS`) on local files: the config
    of `--config_module`, `--cfg_var_name` and `--set`, and the command's `paths` in order;
    an error names the flag it is about."""
    command = COMMANDS[name]
    config = load_config(config_module, cfg_var_name, command.config_class(), overrides)
    with naming_flags(**{p.name: path for p, path in zip(command.paths, paths, strict=True)}):
        return command.run(config, *paths)


def phase_script(name: str, doc: str | None) -> Callable[[], None]:
    """The `main` of the local script of phase `name`: its flags (config, `--set`, one
    `--<path>` per file), the phase, and its summary printed."""

    def main() -> None:
        command = COMMANDS[name]
        parser = config_parser(doc)
        for path in command.paths:
            parser.add_argument(f"--{path.name}", required=True, type=Path, help=path.help)
        args = parser.parse_args()
        paths = [getattr(args, p.name) for p in command.paths]
        result = run_phase(name, args.config_module, args.cfg_var_name, args.overrides, *paths)
        print(command.summary(result, paths))

    return main


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
    """A parser with the flags of every script that runs a config object: --config_module,
    --cfg_var_name and --set (into `args.overrides`)."""
    parser = ArgumentParser(doc)
    parser.add_argument("--config_module", required=True, help="Path to a config .py file")
    parser.add_argument(
        "--cfg_var_name",
        default=module_utils.DEFAULT_VAR_NAME,
        help=f"Variable in that module (default: {module_utils.DEFAULT_VAR_NAME}, as in the "
        "original scripts)",
    )
    add_set_flag(parser)
    return parser


def add_set_flag(parser: argparse.ArgumentParser) -> None:
    """`--set field.path=value` (repeatable) into `args.overrides`."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD.PATH=VALUE",
        help="Override a field of the config (repeatable), e.g. prompt_set.size=100; the value "
        "is read as JSON when it parses, else as a string",
    )


def modal_phase_script(name: str, doc: str | None) -> Callable[[], None]:
    """The `main` of `scripts/modal_<phase>.py`: the local script's flags with paths on the
    Volume (`--<name>_path`, or the original scripts' `--<name>_filename`; outputs default to
    a folder named after `--cfg_var_name`) and --detach. The config (with `--set`) is loaded
    and checked here; the CPU or the GPU function runs it on Modal. The config module must
    live under cfgs/, which Modal ships."""

    def main() -> None:
        modal_client = repo_module("modal_client")
        command = COMMANDS[name]
        parser = config_parser(doc)
        for path in command.paths:
            modal_client.add_artifact_flags(parser, path.name.removesuffix("_path"), path.help)
        parser.add_argument("--detach", action="store_true", help="Keep running if this exits")
        args = parser.parse_args()
        config = load_config(
            args.config_module, args.cfg_var_name, command.config_class(), args.overrides
        )
        with naming_flags(config_module=args.config_module):
            config_path = modal_client.repo_config_path(args.config_module)
        paths = modal_client.volume_paths(command, args)
        models = command.models(config) + [
            Model.model_validate_json(modal_client.read_volume_text(paths[p.name]))
            for p in command.paths
            if p.model_json
        ]
        app = modal_client.load_modal_app()
        function = f"{name}_gpu" if modal_client.needs_gpu(models) else name
        with naming_flags(**{flag: app.on_volume(path) for flag, path in paths.items()}):
            result = modal_client.call_remote(
                function,
                config_path,
                args.cfg_var_name,
                *paths.values(),
                json.dumps(args.overrides),
                detach=args.detach,
            )
        print(f"{command.summary(result, list(paths.values()))} (on the {app.VOLUME_NAME} volume)")

    return main


RESUMES = "interrupted: rerun the same command to resume"
RESTARTS = "interrupted: this run does not resume; a rerun starts it over"


def run_script(main: Callable[[], Any], interrupted: str = RESUMES) -> None:
    """Run a script's main(); every error ends as one line on stderr with a non-zero exit
    code: 2 for user errors, 1 for failed requests or remote jobs and for bugs (whose
    traceback is logged at DEBUG: set SL_LOG_LEVEL=DEBUG to see it). `interrupted` is the
    line printed on Ctrl-C. Settings are checked first, before any request or output."""
    try:
        setup_logging()  # checks every setting: a bad one is a UserError naming it
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
