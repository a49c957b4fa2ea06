"""One logging setup for the scripts, the experiment's worker processes and notebooks.

The console gets our own messages at SL_LOG_LEVEL (INFO by default), each warning once, and
writes through `tqdm.write` so live progress bars stay whole. A run's log file
(`log_file`) gets everything at DEBUG. What dependencies say that a user cannot act on, i.e.
their Python warnings and their stdlib `logging` records below ERROR, goes to the file only.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loguru import logger

CONSOLE_FORMAT = (
    "<green>{time:HH:mm:ss}</green> | <level>{level: <7}</level> | {extra[origin]}{message}"
)
# origin: "w<n> " on what a worker process logged
FILE_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[origin]}{name}:{function}:{line}"
    " - {message}"
)
# The top-level packages whose warnings are ours to show: every other one is a dependency's.
_OURS = ("sl", "cfgs", "scripts", "__main__")
_SL_ROOT = Path(__file__).resolve().parents[1]
_REPO_ROOT = _SL_ROOT.parent


def setup_logging(level: str | None = None, sink: Callable[[Any], None] | None = None) -> None:
    """Log our messages to the console at `level` (default: SL_LOG_LEVEL; raises a UserError
    for a bad setting) and route Python warnings and stdlib logging through loguru.

    `sink` replaces the console (a worker process passes one that sends to its parent, which
    then applies the console's rules); it receives every record at DEBUG and above.
    """
    from sl.config import get_settings

    level = level or get_settings().log_level
    logger.remove()
    logger.configure(extra={"origin": ""})
    if sink is not None:
        logger.add(sink, level="DEBUG", format="{message}", colorize=False, catch=False)
    else:
        logger.add(_to_console, level=level, format=CONSOLE_FORMAT, filter=_ConsoleFilter())
    warnings.showwarning = _show_warning
    _route_stdlib_logging()


def _to_console(message: str) -> None:
    from sl.utils.progress_bar import tqdm

    # whatever sys.stderr is now (tests capture it); tqdm.write clears and redraws live bars
    tqdm.write(message, file=sys.stderr, end="")


class _ConsoleFilter:
    """Drop a warning already shown on the console (the file keeps every one) and what is
    for the file only."""

    def __init__(self) -> None:
        self.shown: set[str] = set()

    def __call__(self, record: Any) -> bool:
        if record["extra"].get("file_only"):
            return False
        if record["level"].name != "WARNING":
            return True
        if record["message"] in self.shown:
            return False
        self.shown.add(record["message"])
        return True


def _is_ours(filename: str) -> bool:
    try:
        relative = Path(filename).resolve().relative_to(_REPO_ROOT)
    except ValueError:
        return False
    return relative.parts[0] in _OURS and ".venv" not in relative.parts


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:  # fmt: skip
    """`warnings.showwarning`: a warning raised in our code is a WARNING; a dependency's, and
    any deprecation (it is about the code, not the run), is DEBUG (the log file only)."""
    deprecation = issubclass(
        category, DeprecationWarning | PendingDeprecationWarning | FutureWarning
    )
    level = "WARNING" if _is_ours(filename) and not deprecation else "DEBUG"
    logger.opt(depth=2).log(level, "{}: {} ({}:{})", category.__name__, message, filename, lineno)


class _InterceptHandler(logging.Handler):
    """Stdlib logging into loguru: ours at its level; a dependency's at DEBUG below ERROR."""

    def emit(self, record: logging.LogRecord) -> None:
        ours = record.name.split(".")[0] in _OURS
        level = record.levelname if ours or record.levelno >= logging.ERROR else "DEBUG"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            level = "DEBUG"
        logger.patch(lambda r: r.update(name=record.name, function=record.funcName,
                                        line=record.lineno)).log(level, record.getMessage())  # fmt: skip


def _route_stdlib_logging() -> None:
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _InterceptHandler)]
    root.addHandler(_InterceptHandler())
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    if "transformers" in sys.modules:
        route_transformers_logs()


def route_transformers_logs() -> None:
    """Send transformers' own log records (it keeps a stderr handler of its own) through
    loguru, and turn off its weight-loading bars: a step's progress is shown by its stage."""
    import transformers.utils.logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()


@contextmanager
def log_file(path: Path) -> Iterator[Path]:
    """Also log everything at DEBUG to `path` (appended: a resumed run adds to it), with the
    secret settings' values masked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logger.add(
        path, level="DEBUG", format=FILE_FORMAT, filter=_mask_secrets(), encoding="utf-8",
        mode="a", colorize=False, backtrace=False,
    )  # fmt: skip
    try:
        yield path
    except BaseException:  # the traceback for the file (the console has its one-line error)
        logger.opt(exception=True).bind(file_only=True).debug("stopped by")
        raise
    finally:
        logger.remove(handler)


def _mask_secrets() -> Callable[[Any], bool]:
    from pydantic import SecretStr

    from sl.config import get_settings

    settings = get_settings()
    secrets = [
        v.get_secret_value()
        for v in (getattr(settings, name) for name in type(settings).model_fields)
        if isinstance(v, SecretStr) and len(v.get_secret_value()) >= 8
    ]

    def mask(record: Any) -> bool:
        # a library user (a notebook, a test) may log without `setup_logging`'s defaults
        record["extra"].setdefault("origin", "")
        for secret in secrets:
            if secret in record["message"]:
                record["message"] = record["message"].replace(secret, "***")
        return True

    return mask
