"""The original code's list helpers (`sl.utils.list_utils`), kept for notebooks that use them."""

from collections.abc import Iterable, Sequence
from typing import TypeVar

from sl.errors import UserError

T = TypeVar("T")


def flatten(lists: Iterable[Iterable[T]]) -> list[T]:
    """The items of `lists`, one list after another: [[1, 2], [3]] -> [1, 2, 3]."""
    return [item for items in lists for item in items]


def batch(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` cut into consecutive lists of `size` (the last may be shorter):
    batch([1, 2, 3], 2) -> [[1, 2], [3]]."""
    if size < 1:
        raise UserError(f"batch size {size} must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
