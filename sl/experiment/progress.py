"""The console display of an experiment stage: one bar for the stage and, on a terminal, a
line per worker process saying which step it runs and how far that step is.

Every finished step is also one INFO line, so a console captured to a file (no live bars)
still shows the run's progress, a line per step.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from loguru import logger

from sl.utils.progress_bar import tqdm


class StageProgress:
    """The progress of one stage's `total` steps: run in worker processes (a line each), or
    in this process (their own bars show beneath the stage's)."""

    def __init__(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done = stage, total, 0
        self.live = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=stage, unit="step", disable=not self.live, leave=True)
        self.lines: dict[int, Any] = {}  # worker pid -> its line
        self.steps: dict[int, str] = {}  # worker pid -> the step it runs
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def running(self, name: str) -> None:
        """A step of this process starts."""
        self.bar.set_postfix_str(name)

    def worker_step(self, pid: int, name: str) -> None:
        """Worker `pid` starts the step `name`."""
        with self._lock:
            self.steps[pid] = name
            self._show(pid, name)

    def worker_status(self, pid: int, status: str) -> None:
        """Worker `pid`'s step reports its progress (the last line of one of its bars)."""
        with self._lock:
            step = self.steps.get(pid, "")
            self._show(pid, f"{step} · {status}" if step else status)

    def _show(self, pid: int, text: str) -> None:
        if not self.live:
            return
        if pid not in self.lines:
            n = len(self.lines) + 1
            self.lines[pid] = tqdm(total=0, bar_format="{desc}", position=n, leave=False)
        width = self.lines[pid].ncols or 120
        self.lines[pid].set_description_str(f"  {text}"[: max(20, width - 1)])

    def step_done(self, name: str, seconds: float) -> None:
        """A step finished: the stage bar moves and one INFO line says so."""
        self.done += 1
        self.bar.update()
        logger.info("{} {}/{}: {} done in {}", self.stage, self.done, self.total, name,
                    _duration(seconds))  # fmt: skip

    def close(self) -> None:
        """Take the worker lines away; the stage bar stays as the stage's summary line."""
        for line in self.lines.values():
            line.close()
        self.bar.close()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
