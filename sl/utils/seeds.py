"""Seeds that depend only on what a request asks, so seeded sampling repeats exactly
whatever the batch split, the process or the order of the requests."""

import hashlib
import json
from collections.abc import Sequence
from typing import Any


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from JSON-able parts (a stable hash: the same in every process)."""
    blob = json.dumps(parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def repeat_index(keys: Sequence[str]) -> list[int]:
    """For each key, how many equal keys come before it (equal requests in one call get
    different streams: 0, 1, 2, ...)."""
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        out.append(seen.get(key, 0))
        seen[key] = out[-1] + 1
    return out
