"""The one guard every artifact is written under: lock, claim, check complete, publish.

    with artifact(path, key, "filtered dataset of gpt-4.1-nano", parts=parts) as out:
        if not out.complete:
            write_jsonl_atomic(path, rows)   # or append and finalise
            out.finish(rows=len(rows))

`artifact` holds the output's lock (`output_lock`), claims it for `key` (`claim_output`: a
file of another run or not made by sl is refused, naming what differs) and says whether it
is complete. "Complete" is checked, not assumed: the meta must say so and the file must be
there with the content digest `finish` recorded. A deleted or hand-edited artifact is redone
(its writer resumes from what is still on disk). Each artifact is guarded at one layer only:
the function that writes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from sl.errors import UserError
from sl.utils.file_utils import read_json_file, write_json_atomic
from sl.utils.output_lock import output_lock
from sl.utils.run_meta import claim_output, differing_parts, read_meta, update_meta, write_meta


def content_digest(path: Path) -> dict[str, Any]:
    """sha256 (16 hex digits) and line count of a file's bytes."""
    digest, lines = hashlib.sha256(), 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            lines += block.count(b"\n")
    return {"sha256": digest.hexdigest()[:16], "lines": lines}


@dataclass
class Artifact:
    """A claimed output (see `artifact`); `complete` is true when nothing is left to do."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    complete: bool = False

    def finish(self, **extra: Any) -> None:
        """Record that the output is finished: its digest, `extra` fields, complete."""
        self.meta = {**(read_meta(self.path) or self.meta), **extra, "complete": True}
        if self.path.is_file():
            self.meta["digest"] = content_digest(self.path)
        write_meta(self.path, self.meta)
        self.complete = True


def _check_complete(path: Path, meta: dict[str, Any]) -> bool:
    """True when `meta` says complete and the file still holds what `finish` recorded; a
    complete meta from before digests were recorded gets one now."""
    if not meta.get("complete"):
        return False
    if not path.exists():
        logger.warning(f"{path} was finished but is gone: making it again")
        return False
    recorded = meta.get("digest")
    found = content_digest(path)
    if recorded is None:  # finished before digests were recorded: trust it, record one
        update_meta(path, digest=found)
        return True
    if recorded != found:
        logger.warning(
            f"{path} changed since it was finished ({recorded['lines']} lines then, "
            f"{found['lines']} now): making it again from what is there"
        )
        return False
    return True


@contextmanager
def artifact(
    path: Path,
    key: str,
    description: str,
    *,
    parts: dict[str, str] | None = None,
    kind: str | None = None,
    redo_when_changed: str | None = None,
    adopt: Callable[[Path], bool] | None = None,
) -> Iterator[Artifact]:
    """Lock and claim `path` for the run `key` for the duration of the block.

    Args:
        path: The output file.
        key: Hash of everything that decides the output's content.
        description: What the output is, named in refusals ("evaluation of gpt-4.1-nano").
        parts: Hash of each part of the config, so that a refusal names the parts that
            differ.
        kind: What sort of file it is ("raw dataset"): a file of another kind is refused.
        redo_when_changed: A part that may change without refusal: when only it differs,
            the output is made again (e.g. "filters": a filtered dataset is cheap to redo).
        adopt: For outputs that sl wrote before they had a meta: says whether a file found
            without one is this run's finished output (then it is claimed as complete).

    Raises:
        UserError: another process writes `path`, or it belongs to another run or was not
            made by sl (nothing of it is overwritten).
    """
    path = Path(path)
    with output_lock(path):
        if adopt is not None and read_meta(path) is None and path.is_file() and adopt(path):
            write_meta(path, {"config_hash": key, "description": description, "complete": True,
                              "parts": parts or {}, **({"kind": kind} if kind else {})})  # fmt: skip
        if redo_when_changed is not None:
            _take_changed_part(path, key, parts or {}, kind, redo_when_changed)
        meta = claim_output(path, key, description, parts=parts, kind=kind)
        complete = _check_complete(path, meta)
        if meta.get("complete") and not complete:
            meta = {k: v for k, v in meta.items() if k != "digest"} | {"complete": False}
            write_meta(path, meta)
        yield Artifact(path, meta, complete)


def _take_changed_part(
    path: Path, key: str, parts: dict[str, str], kind: str | None, part: str
) -> None:
    meta = read_meta(path)
    if meta is None or meta.get("kind", kind) != kind:
        return
    if differing_parts(meta, key, parts) == [part]:
        logger.info(f"{path}: its {part} changed since it was written; making it again")
        update_meta(path, parts={**meta.get("parts", {}), **parts}, complete=False)


@contextmanager
def folder_artifact(root: Path, key: str, config: dict[str, Any], record: str) -> Iterator[Path]:
    """Lock and claim a whole output folder (an experiment) for the run `key`.

    The folder's `record` file (JSON: the key and `config`) says whose it is. A folder of
    another run is refused naming the config fields that differ; one that holds files but no
    record (not made by sl) is refused too.
    """
    root = Path(root)
    with output_lock(root, is_dir=True):
        path = root / record
        if path.exists():
            saved = read_json_file(path, "output record")
            if not isinstance(saved, dict):
                raise UserError(f"{path} is corrupt: delete it to start over", path=root)
            if saved.get("config_hash") != key:
                old = saved.get("config")
                old = old if isinstance(old, dict) else {}
                differ = [k for k in config if k in old and old[k] != config[k]] or ["config"]
                raise UserError(
                    f"{root} holds a different run ({path.name}; {', '.join(differ)} differ): "
                    "choose another folder or delete it",
                    path=root,
                )
        else:
            foreign = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
            if foreign:
                more = ", ..." if len(foreign) > 3 else ""
                raise UserError(
                    f"{root} already holds files not made by sl ({', '.join(foreign[:3])}"
                    f"{more}) and no {record}: choose a new or empty folder",
                    path=root,
                )
            write_json_atomic(path, {"config_hash": key, "config": config})
        yield root
