"""JSON/JSONL reading and writing: atomic writes, line-by-line appends, clear errors."""

import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ValidationError

from sl.errors import UserError

T = TypeVar("T", bound=BaseModel)


def _default_mode() -> int:
    """The mode a plainly created file gets here (0666 minus the umask), as appends get."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_mode()


_MAX_NAME_BYTES = 200  # a file name's limit is 255 bytes; room left for suffixes


def path_component_problem(name: str) -> str | None:
    """Why `name` cannot be used as one file or folder name inside an output folder (None
    when it can): empty, `.`/`..`, hidden, with a path separator or NUL, or too long."""
    if not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} means a folder itself"
    if "/" in name or "\\" in name or os.sep in name:
        return "it contains a path separator"
    if "\0" in name:
        return "it contains a NUL character"
    if name.startswith("."):
        return "it starts with '.' (hidden files are the project's own)"
    if len(name.encode()) > _MAX_NAME_BYTES:
        return f"it is longer than {_MAX_NAME_BYTES} bytes"
    return None


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "device"),
    (stat.S_ISBLK, "device"),
)


def refuse_special_file(path: Path | str, what: str = "") -> None:
    """Refuse a path that exists but is neither a regular file nor a folder (a FIFO, device
    or socket): opening one can block forever or write into a device.

    Raises:
        UserError: naming the path (and `what` it is) and its kind.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing (or unreadable: the open that follows says so)
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = next((kind for is_kind, kind in _SPECIAL_KINDS if is_kind(mode)), "special file")
    name = f"{what} {path}" if what else str(path)
    raise UserError(
        f"{name} is a {kind}, not a regular file: give a file path", path=None if what else path
    )


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write a file via a temp file + rename, so readers never see a partial file."""
    path = Path(path)
    refuse_special_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; give the result the mode of the file it replaces, or the
        # mode any other file created here gets (appended JSONL files included).
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.is_file() else _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
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
        refuse_special_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_trailing_partial_line(self.path)
        self._f = self.path.open("a", encoding="utf-8")

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


def read_text(path: Path | str, what: str = "") -> str:
    """A UTF-8 text file's content; missing, a folder, unreadable or not UTF-8 → UserError
    naming the file (and `what` it is, e.g. "batch state")."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    about = None if what else path  # the message starts with the path: see UserError

    def error(problem: str) -> UserError:
        return UserError(f"{name}: {problem}", path=about)

    if not path.exists():
        raise error("file not found")
    refuse_special_file(path, what)
    if path.is_dir():
        raise error("cannot read it (Is a directory): give a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"cannot read it (not UTF-8 text at byte {e.start}): check the file") from None
    except OSError as e:
        raise error(f"cannot read it ({e.strerror})") from None


def read_json_file(path: Path | str, what: str) -> Any:
    """Parse a JSON file of sl's own (a state or config record); corrupt → UserError that
    says to delete it."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except ValueError as e:
        raise UserError(f"{what} {path} is corrupt ({e}): delete it to start over") from None


@overload
def read_jsonl(
    path: Path | str,
    row_type: type[T],
    *,
    allow_partial_last: bool = False,
    context: dict[str, Any] | None = None,
) -> list[T]: ...
@overload
def read_jsonl(
    path: Path | str,
    row_type: None = None,
    *,
    allow_partial_last: bool = False,
    context: dict[str, Any] | None = None,
) -> list[dict[str, Any]]: ...
@overload
def read_jsonl(*, fname: Path | str) -> list[dict[str, Any]]: ...
def read_jsonl(
    path: Path | str | None = None,
    row_type: type[T] | None = None,
    *,
    fname: Path | str | None = None,
    allow_partial_last: bool = False,
    context: dict[str, Any] | None = None,
) -> list[T] | list[dict[str, Any]]:
    """Read a JSONL file into models (or, without `row_type`, into dicts as the original
    code's `read_jsonl(fname)` did); a bad line raises UserError naming file and line.

    `fname=` is the original's name for `path`. With `allow_partial_last`, a final line cut
    by a crash (no trailing newline) is ignored. `context` is passed to the models'
    validators (e.g. `DatasetRow`'s `TRAINING`).
    """
    given = path if path is not None else fname
    if given is None or (path is not None and fname is not None):
        raise UserError("read_jsonl: give the file once, as path (or the original's fname=)")
    path = Path(given)
    text = read_text(path)
    lines = text.split("\n")
    partial_last = not text.endswith("\n") and text != ""
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(
                row_type.model_validate_json(line, context=context)
                if row_type
                else json.loads(line)
            )
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
        message = first["msg"].removeprefix("Value error, ")
        return f"{message} at {'.'.join(map(str, first['loc']))}"
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


def read_json_model(path: Path | str, model_type: type[T], what: str = "") -> T:
    """Read one JSON file into a model; missing or invalid → UserError naming the file (and
    `what` it is, e.g. "student model")."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    about = None if what else path
    if not path.exists():
        raise UserError(f"{name} not found", path=about)
    text = read_text(path, what)
    try:
        return model_type.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(map(str, first["loc"])) or "<root>"
        raise UserError(f"{name} is invalid: {first['msg']} at {loc}", path=about) from None
