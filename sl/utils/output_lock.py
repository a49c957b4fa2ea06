"""An exclusive lock per output, so that two runs never write the same artifact at once.

    with output_lock(Path("data/owl/raw.jsonl")):
        ...  # only this process writes data/owl/raw.jsonl (and its sidecars) now

The lock is `fcntl.flock` on `<output>.lock`, a side file holding the holder's PID. The
kernel drops it when the holder dies, so a lock left by a killed run is simply taken over.
A second run on the same output fails at once with one line naming the holder's PID. Each
output is locked at one layer (`sl.utils.artifact`), so locking it twice in one process is a
bug and raises RuntimeError.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from loguru import logger

from sl.errors import UserError
from sl.utils.file_utils import refuse_special_file

_held: dict[Path, int] = {}  # resolved lock path -> fd
_held_guard = threading.Lock()


def lock_path_for(output: Path) -> Path:
    """The side file whose flock guards `output`."""
    return output.with_name(output.name + ".lock")


def prepare_parent(output: Path) -> None:
    """Create `output`'s folder; a parent that is a file or not writable is a UserError."""
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(
            f"{output}: a parent of it is a file, not a folder; choose another path", path=output
        ) from None
    except OSError as e:
        raise UserError(
            f"{output}: cannot create its folder ({e.strerror}); choose another path",
            path=output,
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"{output}: folder {parent} is not writable; choose another path", path=output
        )


def check_output_path(output: Path, *, is_dir: bool = False) -> None:
    """Make sure `output` can be written: its folder exists (created) and is writable, and
    it is not a folder where a file is expected (or the reverse, with `is_dir`), nor a FIFO
    or device.

    Raises:
        UserError: one line naming the path and what to do.
    """
    if not is_dir and output.is_dir():
        raise UserError(f"{output} is a folder: give a file path", path=output)
    if is_dir and output.exists() and not output.is_dir():
        raise UserError(f"{output} is a file: give a folder", path=output)
    refuse_special_file(output)  # a FIFO or device: refused before any work, not at the write
    prepare_parent(output if not is_dir else output / "x")


@contextmanager
def output_lock(output: Path, *, is_dir: bool = False) -> Iterator[None]:
    """Hold the exclusive lock of `output` for the duration of the block.

    Raises:
        UserError: another process holds it (the message names its PID), or the output's
            folder cannot be created or written, or `output` is a folder where a file is
            expected (or the reverse, with `is_dir`).
    """
    output = Path(output)
    check_output_path(output, is_dir=is_dir)
    path = (lock_path_for(output) if not is_dir else output / ".lock").resolve()
    with _held_guard:
        if path in _held:
            raise RuntimeError(f"{output} is locked twice in this process (a bug)")
        _held[path] = -1
    try:
        _held[path] = _acquire(path, output)
    except BaseException:
        with _held_guard:
            del _held[path]
        raise
    try:
        yield
    finally:
        _release(path)


def _acquire(path: Path, output: Path) -> int:
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(
                    f"{output} is being written by another run (PID {holder or '?'}): "
                    f"wait for it to finish, or stop it, or choose another path",
                    path=output,
                ) from None
            # A filesystem without flock (some network volumes): go on unlocked.
            logger.warning(f"cannot lock {path} ({e.strerror}): continuing without a lock")
            return -1
        # The previous holder may have removed the file between our open and flock: then
        # we locked an orphan inode, and must lock the file now at that path instead.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = _read_pid(fd)
        if previous and previous != os.getpid():
            logger.info(f"taking over the lock of {output} left by PID {previous} (not running)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _release(path: Path) -> None:
    with _held_guard:
        fd = _held.pop(path)
    if fd < 0:
        return
    # Remove the file while still holding the lock (waiters re-check the inode), then unlock.
    with suppress(OSError):
        path.unlink(missing_ok=True)
    os.close(fd)
