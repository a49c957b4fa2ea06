"""Errors a user can cause and fix. Scripts print them as one line and exit non-zero."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input (config, paths, keys) that says how to fix it.

    An error about one path the caller gave (an output to write, a file to read) starts its
    message with that path and keeps it in `path`, so that a script can name the flag that
    gave it (`--output_path data/x.jsonl is a folder: ...`). An error about the value of one
    argument starts its message with the argument's name and keeps that name in `param`
    (`control ctrl: no condition of that name`), so that a script can name its flag
    instead. The library never names flags.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, param: str | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.param = param

    def __reduce__(self) -> tuple:
        # Keeps `path` and `param` across processes (an experiment's worker steps).
        return (_user_error, (str(self), self.path, self.param))


def _user_error(message: str, path: Path | None, param: str | None) -> UserError:
    return UserError(message, path=path, param=param)


class RemoteError(RuntimeError):
    """A remote service failed for good (after retries): the message names the cause
    (timeout, refused connection to a host, HTTP status and message) and what to do."""
