"""Worker processes for an experiment stage's steps: fresh interpreters sharing the CPU's
threads, memory handed back between steps, the first failure stopping the rest.

A worker writes nothing to the terminal: its log records, its bars and whatever its
dependencies print go to the parent through a queue. The parent logs the records (console
and run log), shows each worker's bars as that worker's line of the stage's display
(`StageProgress`) and keeps the dependencies' lines in the run log only.
"""

import os
import re
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from loguru import logger

from sl.experiment.progress import StageProgress
from sl.utils.logging_setup import setup_logging

_to_parent: Any = None  # in a worker: the queue to the parent
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@contextmanager
def worker_pool(workers: int, progress: StageProgress) -> Iterator[ProcessPoolExecutor]:
    """Worker processes (fresh interpreters) sharing the CPU's threads, reporting to
    `progress` and to this process's logger."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    listener = threading.Thread(target=_listen, args=(queue, progress), daemon=True)
    listener.start()
    try:
        with ProcessPoolExecutor(workers, context, _init_worker, (threads, queue)) as pool:
            yield pool
    finally:
        queue.put(None)
        listener.join()
        queue.close()


def _listen(queue: Any, progress: StageProgress) -> None:
    """In the parent: apply what the workers send until None."""
    numbers: dict[int, int] = {}
    for kind, pid, payload in iter(queue.get, None):
        origin = f"w{numbers.setdefault(pid, len(numbers) + 1)} "
        if kind == "log":
            level, message, where = payload
            logger.patch(lambda r, where=where: r.update(where)).bind(origin=origin).log(
                level, "{}", message
            )
        elif kind == "step":
            progress.worker_step(pid, payload)
        elif kind == "status":
            progress.worker_status(pid, payload)
        else:  # a line a dependency printed: the run log only
            logger.bind(origin=origin).debug("{}", payload)


def _init_worker(threads: int, queue: Any) -> None:
    import sys

    import torch

    global _to_parent
    _to_parent = queue
    torch.set_num_threads(threads)
    setup_logging(sink=_send_record)
    sys.stdout = sys.stderr = _StreamToParent()


def announce(step: str) -> None:
    """In a worker: tell the parent which step starts (its line of the stage display)."""
    if _to_parent is not None:
        _to_parent.put(("step", os.getpid(), step))


def _send_record(message: Any) -> None:
    """A worker's loguru sink: every record to the parent, which applies its own levels."""
    record = message.record
    text = record["message"]
    if record["exception"] is not None:
        kind, value, tb = record["exception"]
        text += "\n" + "".join(traceback.format_exception(kind, value, tb)).rstrip()
    where = {k: record[k] for k in ("name", "function", "line", "time")}
    _to_parent.put(("log", os.getpid(), (record["level"].name, text, where)))


class _StreamToParent:
    """A worker's stdout and stderr. Text ended by a carriage return is a bar's redraw: the
    worker's status; a line is a dependency's print, or a bar's last state (the status too):
    the run log."""

    def __init__(self) -> None:
        self.pending = ""
        self.in_bar = False  # the last segment ended with a carriage return

    def write(self, text: str) -> int:
        self.pending += text
        *done, self.pending = re.split(r"(\r|\n)", self.pending)
        for segment, end in zip(done[::2], done[1::2], strict=True):
            segment = _ANSI.sub("", segment).strip()
            if not segment:
                continue
            if end == "\r" or self.in_bar:
                _to_parent.put(("status", os.getpid(), segment))
            if end == "\n":
                _to_parent.put(("line", os.getpid(), segment))
            self.in_bar = end == "\r"
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def release_memory() -> None:
    """Free what a finished step left behind before the worker's next step: models sit in
    reference cycles that Python frees only at a full collection, and glibc keeps freed heap
    pages. Without this two workers each grew past 10 GB over a stage of 4-5 students, and
    one was killed for memory on a 24 GB machine."""
    import ctypes
    import gc
    from contextlib import suppress

    gc.collect()
    with suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def completed(futures: dict[Future, Any]) -> Iterator[Future]:
    """The futures as they finish; the first failure cancels the steps not yet started (the
    running ones finish and stay on disk) and is raised."""
    try:
        for future in as_completed(futures):
            future.result()
            yield future
    except BaseException:
        for future in futures:
            future.cancel()
        raise
