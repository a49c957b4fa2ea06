"""What every script shares: loading a config variable from a module file, clean failures."""

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from loguru import logger
from pydantic import ValidationError

from sl.errors import RemoteError, UserError
from sl.llm.driver import SampleError
from sl.utils.config_model import validation_error_line
from sl.utils.optional_deps import install_hint

T = TypeVar("T")


def load_module(config_module: str | Path) -> ModuleType:
    """Import a Python file (a config module) by path; errors name the file in one line."""
    path = Path(config_module)
    if not path.is_file():
        raise UserError(f"--config_module {config_module}: file not found")
    spec = importlib.util.spec_from_file_location(f"sl_cfg_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UserError(f"--config_module {config_module}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except UserError:
        raise
    except ValidationError as e:
        raise UserError(f"--config_module {config_module}: {validation_error_line(e)}") from None
    except Exception as e:
        hint = install_hint(e.name) if isinstance(e, ModuleNotFoundError) else None
        message = hint or (str(e).splitlines()[0] if str(e) else "")
        raise UserError(
            f"--config_module {config_module} failed to import: {type(e).__name__}: {message}"
        ) from None
    return module


def load_config(config_module: str, var_name: str, expected: type[T]) -> T:
    """Import a config module from its file path and return `var_name`, checked by type."""
    module = load_module(config_module)
    if not hasattr(module, var_name):
        names = sorted(n for n, v in vars(module).items() if isinstance(v, expected))
        raise UserError(
            f"--cfg_var_name {var_name} is not defined in {config_module}"
            + (f"; {expected.__name__} variables there: {', '.join(names)}" if names else "")
        )
    value = getattr(module, var_name)
    if not isinstance(value, expected):
        raise UserError(
            f"--cfg_var_name {var_name} in {config_module} is a {type(value).__name__}, "
            f"but this script needs a {expected.__name__}"
        )
    return value


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


RESUMES = "interrupted: rerun the same command to resume"
RESTARTS = "interrupted: this run does not resume; a rerun starts it over"


def _to_stderr(message: str) -> None:
    sys.stderr.write(message)  # whatever sys.stderr is now (tests capture it)


def _setup_logging() -> None:
    """Log to stderr at SL_LOG_LEVEL (INFO by default; DEBUG shows the tracebacks behind
    errors)."""
    level = os.environ.get("SL_LOG_LEVEL", "INFO").upper()
    logger.remove()
    try:
        logger.add(_to_stderr, level=level)
    except ValueError:
        logger.add(_to_stderr, level="INFO")
        logger.warning(f"SL_LOG_LEVEL={level!r} is not a log level: using INFO")


def run_script(main: Callable[[], Any], interrupted: str = RESUMES) -> None:
    """Run a script's main(); every error ends as one line on stderr with a non-zero exit
    code: 2 for user errors, 1 for failed requests or remote jobs and for bugs (whose
    traceback is logged at DEBUG: set SL_LOG_LEVEL=DEBUG to see it). `interrupted` is the
    line printed on Ctrl-C."""
    _setup_logging()
    try:
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
