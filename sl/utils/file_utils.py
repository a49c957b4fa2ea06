"""JSON/JSONL reading and writing: atomic writes, line-by-line appends, clear errors."""

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ValidationError

from sl.errors import UserError

T = TypeVar("T", bound=BaseModel)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write a file via a temp file + rename, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Write JSON atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_jsonl_atomic(path: Path | str, rows: Iterable[BaseModel | dict]) -> None:
    """Write JSONL atomically, one object per line."""
    lines = [_dump(r) for r in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def _dump(row: BaseModel | dict) -> str:
    return row.model_dump_json() if isinstance(row, BaseModel) else json.dumps(row)


class JsonlAppender:
    """Appends rows to a JSONL file, flushed after each line (crash-safe resume)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_trailing_partial_line(self.path)
        self._f = self.path.open("a")

    def append(self, row: BaseModel | dict) -> None:
        self._f.write(_dump(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _repair_trailing_partial_line(path: Path) -> None:
    """Drop a final line without newline (a write cut by a crash) before appending."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data[: data.rfind(b"\n") + 1]
    path.write_bytes(keep)


@overload
def read_jsonl(
    path: Path | str, row_type: type[T], *, allow_partial_last: bool = False
) -> list[T]: ...
@overload
def read_jsonl(
    path: Path | str, row_type: None = None, *, allow_partial_last: bool = False
) -> list[dict[str, Any]]: ...
def read_jsonl(
    path: Path | str, row_type: type[T] | None = None, *, allow_partial_last: bool = False
) -> list[T] | list[dict[str, Any]]:
    """Read a JSONL file into models (or, without `row_type`, into dicts as the original
    code's `read_jsonl(fname)` did); a bad line raises UserError naming file and line.

    With `allow_partial_last`, a final line cut by a crash (no trailing newline) is ignored.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    text = path.read_text()
    lines = text.split("\n")
    partial_last = not text.endswith("\n") and text != ""
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(row_type.model_validate_json(line) if row_type else json.loads(line))
        except ValueError as e:  # pydantic ValidationError or json.JSONDecodeError
            if allow_partial_last and partial_last and i == len(lines):
                break
            raise UserError(
                f"{path}:{i}: malformed line ({_why(e)}); fix or remove that line"
            ) from None
    return rows


def _why(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{first['msg']} at {'.'.join(map(str, first['loc']))}"
    return str(error)


def save_jsonl(
    data: Iterable[BaseModel | dict], fname: Path | str, mode: Literal["a", "w"] = "w"
) -> None:
    """The original code's `save_jsonl`: "w" writes the file atomically, "a" appends lines."""
    if mode == "w":
        write_jsonl_atomic(fname, data)
        return
    with JsonlAppender(fname) as appender:
        for row in data:
            appender.append(row)


def save_json(data: BaseModel | dict | list, fname: Path | str) -> None:
    """The original code's `save_json`: a model, dict or list as indented JSON (atomic)."""
    write_json_atomic(fname, data.model_dump(mode="json") if isinstance(data, BaseModel) else data)


def read_json_model(path: Path | str, model_type: type[T], what: str) -> T:
    """Read one JSON file into a model; missing or invalid → UserError naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} not found")
    try:
        return model_type.model_validate_json(path.read_text())
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(map(str, first["loc"])) or "<root>"
        raise UserError(f"{what} {path} is invalid: {first['msg']} at {loc}") from None
