"""A step for a worker process of the console tests (a module a spawned worker can import)."""

import time

from loguru import logger

from sl.experiment.workers import announce


def chatty_step(n: int) -> int:
    """A worker's step that logs, draws a bar and prints, as the library's steps do."""
    from tqdm import tqdm

    announce(f"finetune run{n}")
    logger.info("worker step {} summary", n)
    logger.debug("worker step {} detail", n)
    for _ in tqdm(range(3), desc="distill", mininterval=0):
        time.sleep(0.01)
    print("a dependency's chatter")
    return n
