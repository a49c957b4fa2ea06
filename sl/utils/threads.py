"""Awaiting work that runs in a worker thread."""

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def await_waking(work: "asyncio.Future[T]") -> T:
    """The result of `work` (e.g. `asyncio.to_thread`'s), waking the event loop every 0.2 s
    meanwhile: a kernel's SIGINT, when the OS hands it to another thread, is acted on only once
    the main thread runs Python again (ipykernel#881: else an interrupt waits for the work)."""
    while not work.done():
        await asyncio.wait({work}, timeout=0.2)
    return work.result()
