"""The one seeded subsample of a fine-tuning dataset, shared by every backend (OpenAI API,
LoRA SFT, distillation): the same seed and `max_dataset_size` train on the same rows."""

import hashlib
import random

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError


def select_rows(rows: list[DatasetRow], max_size: int | None, seed: int) -> list[DatasetRow]:
    """Return the rows to train on: all of them, or a seeded random subset of `max_size`.

    The subset is `random.Random(seed).sample` of the rows in a canonical order (by a hash
    of each row's content), so it does not depend on the order of the file: two runs whose
    teachers wrote the same rows in another order train on the same subset. (The original
    code sampled the rows in file order, which its concurrent generation made random.)

    Args:
        rows: The full dataset.
        max_size: Keep at most this many rows (None keeps all).
        seed: Seed of the subsample; equal seeds give equal subsets.

    Raises:
        UserError: If `rows` is empty.
    """
    if not rows:
        raise UserError("the fine-tuning dataset is empty: pass a dataset JSONL with rows")
    if max_size is None or len(rows) <= max_size:
        return list(rows)
    canonical = sorted(rows, key=_content_key)
    return random.Random(seed).sample(canonical, max_size)


def _content_key(row: DatasetRow) -> str:
    return hashlib.sha256(row.model_dump_json().encode()).hexdigest()
