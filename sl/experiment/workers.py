"""Worker processes for an experiment stage's steps: fresh interpreters sharing the CPU's
threads, memory handed back between steps, the first failure stopping the rest."""

import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from loguru import logger

from sl.config import get_settings


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes (fresh interpreters) sharing the CPU's threads."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _init_worker, (threads,)) as pool:
        yield pool


def _init_worker(threads: int) -> None:
    import sys

    import torch

    torch.set_num_threads(threads)
    logger.remove()  # a fresh interpreter logs at DEBUG: log as the scripts do
    logger.add(sys.stderr, level=get_settings().log_level)


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
