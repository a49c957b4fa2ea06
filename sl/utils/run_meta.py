"""Sidecar files that tie an output artifact to the config that made it.

`<output>.meta.json` holds the config hash and, per part of the config (model, filters,
dataset, ...), that part's hash: a rerun with the same config resumes or skips, a rerun with
a different config refuses to touch the artifact and names the parts that differ.
"""

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sl.errors import UserError
from sl.utils.file_utils import write_json_atomic

Row = TypeVar("Row")


def meta_path(output: Path) -> Path:
    return output.with_name(output.name + ".meta.json")


def read_meta(output: Path) -> dict[str, Any] | None:
    path = meta_path(output)
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        meta = None
    if not isinstance(meta, dict):
        raise UserError(f"{path} is corrupt: delete it (and {output}) to start over")
    return meta


def differing_parts(meta: dict[str, Any], config_hash: str, parts: dict[str, str]) -> list[str]:
    """Names of the parts of `meta`'s config that differ from `parts` ("config" when only
    the overall hash tells them apart, e.g. a meta written before parts were recorded)."""
    saved = meta.get("parts") or {}
    differ = [name for name, h in parts.items() if name in saved and saved[name] != h]
    if not differ and meta.get("config_hash") != config_hash:
        differ = ["config"]
    return differ


def claim_output(
    output: Path,
    config_hash: str,
    description: str,
    *,
    parts: dict[str, str] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Make sure `output` belongs to this run; return its meta (with "complete" state).

    `kind` says what the file is ("raw dataset", "filtered dataset", ...): a file of another
    kind is refused even when the config matches (e.g. swapped raw and filtered dataset paths).

    Raises:
        UserError: `output` exists and was made by a different config (naming the parts that
            differ), is of another kind, or exists with no meta at all (not made by sl), so
            nothing of another run is overwritten.
    """
    parts = parts or {}
    meta = read_meta(output)
    if meta is None:
        if output.exists() and (output.is_dir() or output.stat().st_size > 0):
            raise UserError(
                f"{output} already exists and was not made by this config: "
                f"choose another path or delete it",
                path=output,
            )
        meta = {"config_hash": config_hash, "description": description, "complete": False}
        if parts:
            meta["parts"] = parts
        if kind:
            meta["kind"] = kind
        write_json_atomic(meta_path(output), meta)
        return meta
    if kind and meta.get("kind", kind) != kind:
        raise UserError(
            f"{output} holds a {meta['kind']}, not a {kind}: check that the paths are not swapped",
            path=output,
        )
    differ = differing_parts(meta, config_hash, parts)
    if differ:
        raise UserError(
            f"{output} belongs to a different run ({meta.get('description')!r}; "
            f"{', '.join(differ)} differ): choose another path or delete it and "
            f"{meta_path(output).name}",
            path=output,
        )
    missing = {k: v for k, v in parts.items() if k not in (meta.get("parts") or {})}
    if missing or (kind and "kind" not in meta):
        meta["parts"] = {**(meta.get("parts") or {}), **missing}
        if kind:
            meta["kind"] = kind
        write_json_atomic(meta_path(output), meta)
    return meta


def write_meta(output: Path, meta: dict[str, Any]) -> None:
    """Replace `output`'s meta (atomically)."""
    write_json_atomic(meta_path(output), meta)


def update_meta(output: Path, **fields: Any) -> None:
    """Set fields of `output`'s meta (e.g. new part hashes after re-deriving it)."""
    meta = read_meta(output) or {}
    meta.update(fields)
    write_json_atomic(meta_path(output), meta)


def pending_indices(
    wanted: Sequence[str], done: Iterable[str], output: Path | None, what: str
) -> list[int]:
    """Indices of the `wanted` keys (prompts, questions) that the rows already in `output`
    (their keys: `done`; none without an output) do not cover; keys may repeat, so they are
    counted.

    Raises:
        UserError: `output` holds a key more often than `wanted` has it: rows of another run
            (`what` says of what, e.g. "other questions").
    """
    left = Counter(done)
    counts = Counter(wanted)
    foreign = [key for key in left if left[key] > counts[key]]
    if foreign:
        raise UserError(
            f"{output} holds rows of {what} (e.g. {foreign[0][:60]!r}): "
            "choose another path or delete it",
            path=output,
        )
    pending = []
    for i, key in enumerate(wanted):
        if left[key] > 0:
            left[key] -= 1
        else:
            pending.append(i)
    return pending


def in_key_order(
    wanted: Sequence[str], rows: Iterable[Row], key: Callable[[Row], str]
) -> list[Row]:
    """`rows` ordered like their keys in `wanted` (rows of a repeated key sorted by content);
    a resumed output is finalised in this order, so reruns write the same bytes."""
    by_key: dict[str, list[Row]] = {}
    for row in rows:
        by_key.setdefault(key(row), []).append(row)
    for bucket in by_key.values():
        bucket.sort(key=str)
    return [by_key[k].pop(0) for k in wanted if by_key.get(k)]
