"""Training that stops when asked and resumes from its last saved state.

A student's training runs in a worker thread (`run_stoppable`). When the caller is cancelled
(Ctrl-C, a notebook's interrupt), the thread is asked to stop: it saves its state at the end of
the step it is in and ends; the caller waits for that, so a rerun never trains beside it. The
state is also saved every `SL_CHECKPOINT_INTERVAL_S` seconds, so a crash or a kill loses at
most that much. A rerun of the same job on the same rows resumes from the saved state and
ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from sl.config import get_settings
from sl.utils.threads import await_waking

T = TypeVar("T")


class TrainingStopped(Exception):
    """The training was asked to stop at `at` ("step 3/12"); its state is saved in
    `saved_in` for a resume."""

    def __init__(self, at: str, saved_in: Path | None):
        where = f"; its state is saved in {saved_in}" if saved_in is not None else ""
        super().__init__(f"training stopped at {at}{where}: run it again to resume")


async def run_stoppable(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args, stop=<threading.Event>)` in a worker thread. Cancelled, the event is set and
    the thread waited for: it saves its state at the end of its step and stops."""
    stop = threading.Event()
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args, stop=stop))
    try:
        return await await_waking(work)
    except BaseException:
        stop.set()
        while not work.done():
            try:
                await asyncio.wait({work})
            except asyncio.CancelledError:  # cancelled again: still wait for the save
                continue
        if not work.cancelled() and isinstance(work.exception(), TrainingStopped):
            logger.info(str(work.exception()))
        raise


def save_due(saved_at: float, save_s: float = 0.0) -> bool:
    """Whether `SL_CHECKPOINT_INTERVAL_S` has passed since `saved_at` (monotonic; 0: never),
    and at least 10x the last save's `save_s` (a full model's state takes seconds to write:
    periodic saves cost at most a tenth of the training)."""
    every = get_settings().checkpoint_interval_s
    return every > 0 and time.monotonic() - saved_at >= max(every, 10 * save_s)


class SaveTimer:
    """When the last save of a training ended and how long it took: `due()` says whether a
    periodic save is due (`save_due`)."""

    def __init__(self) -> None:
        self.saved_at = time.monotonic()
        self.save_s = 0.0

    def due(self) -> bool:
        return save_due(self.saved_at, self.save_s)

    def saved(self, started: float) -> None:
        """A save that began at `started` (monotonic) has just ended."""
        self.saved_at = time.monotonic()
        self.save_s = self.saved_at - started


class Checkpoint:
    """The saved state of one training run, in one file beside the student's folder.

    `key` names the run (job, teacher, rows): a file of another key is ignored and replaced.
    """

    def __init__(self, student_dir: Path, key: str):
        self.path = student_dir.with_name(student_dir.name + ".checkpoint.pt")
        self.key = key
        self.timer = SaveTimer()

    def load(self) -> dict[str, Any] | None:
        """The saved state of this run, or None (no file, another run's, or unreadable)."""
        import torch

        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: start over
            logger.warning(f"{self.path} is unreadable ({e}); training from the start")
            return None
        if state.get("key") != self.key:
            logger.info(f"{self.path} holds another training run; training from the start")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` (tensors, numbers, lists) atomically."""
        import torch

        started = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        torch.save({**state, "key": self.key}, tmp)
        tmp.replace(self.path)
        self.timer.saved(started)

    def remove(self) -> None:
        """Delete the file (the student is finished)."""
        self.path.unlink(missing_ok=True)


def check_stop(
    stop: threading.Event | None, checkpoint: Checkpoint | None, state: Callable[[], dict], at: str
) -> None:
    """At a step's end: save the state when asked to stop (then raise TrainingStopped) or when
    a periodic save is due. `state` builds what to save; `at` says where ("step 3/12")."""
    asked = stop is not None and stop.is_set()
    if checkpoint is not None and (asked or checkpoint.timer.due()):
        checkpoint.save(state())
        logger.debug(f"training state saved at {at} to {checkpoint.path}")
    if asked:
        raise TrainingStopped(at, checkpoint.path if checkpoint is not None else None)
