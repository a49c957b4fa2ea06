"""Sidecar files that tie an output artifact to the config that made it.

`<output>.meta.json` holds the config hash; a rerun with the same config resumes or skips,
a rerun with a different config refuses to touch the artifact.
"""

import json
from pathlib import Path
from typing import Any

from sl.errors import UserError
from sl.utils.file_utils import write_json_atomic


def meta_path(output: Path) -> Path:
    return output.with_name(output.name + ".meta.json")


def read_meta(output: Path) -> dict[str, Any] | None:
    path = meta_path(output)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path} is corrupt: delete it (and {output}) to start over") from None


def claim_output(output: Path, config_hash: str, description: str, flag: str) -> dict[str, Any]:
    """Make sure `output` belongs to this run; return its meta (with "complete" state).

    Raises UserError if `output` exists and was made by a different config, or exists with
    no meta at all (an artifact from elsewhere), so nothing of another run is overwritten.
    """
    meta = read_meta(output)
    if meta is None:
        if output.exists() and output.stat().st_size > 0:
            raise UserError(
                f"{flag} {output} already exists and was not made by this config: "
                f"choose another path or delete it"
            )
        meta = {"config_hash": config_hash, "description": description, "complete": False}
        write_json_atomic(meta_path(output), meta)
        return meta
    if meta.get("config_hash") != config_hash:
        raise UserError(
            f"{flag} {output} belongs to a different run ({meta.get('description')!r}): "
            f"choose another path or delete it and {meta_path(output).name}"
        )
    return meta


def mark_complete(output: Path, **extra: Any) -> None:
    """Record that `output` is finished (a rerun with the same config can skip it)."""
    meta = read_meta(output) or {}
    meta.update(extra, complete=True)
    write_json_atomic(meta_path(output), meta)
