"""LoRA fine-tuning of open models: adapter folder next to the model JSON, resumable, atomic.

`run_open_source_job(job, rows, Path("data/owl/student.json"))` trains and saves adapter +
tokenizer into `data/owl/student_adapter/` and returns `Model(id=<that folder>, ...)`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from loguru import logger

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.llm.data_models import Model

MARKER = "sl_job.json"  # written last inside a finished adapter folder


def adapter_dir_for(output_path: Path) -> Path:
    """The adapter folder of a model JSON: `data/x/student.json` -> `data/x/student_adapter`."""
    return output_path.parent / f"{output_path.with_suffix('').name}_adapter"


def read_marker(adapter_dir: Path) -> dict[str, Any] | None:
    """The job record of a finished adapter folder, or None if there is none."""
    try:
        return json.loads((adapter_dir / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _model_for(job: UnslothFinetuningJob, adapter_dir: Path, hub_id: str | None) -> Model:
    return Model(id=hub_id or str(adapter_dir), type="open_source", parent_model=job.source_model)


def _check_existing(job: UnslothFinetuningJob, adapter_dir: Path) -> dict[str, Any] | None:
    """Return the marker of a finished adapter for this job; raise if the folder holds another."""
    if not adapter_dir.exists():
        return None
    marker = read_marker(adapter_dir)
    if marker is None or marker.get("job_hash") != job.model_hash():
        raise UserError(
            f"{adapter_dir} already exists and holds another fine-tune; "
            "delete it or choose another output path"
        )
    return marker


def _push(job: UnslothFinetuningJob, adapter_dir: Path) -> str | None:
    if not job.hf_model_name:
        return None
    from sl.external.hf_driver import push_to_hub

    return push_to_hub(adapter_dir, job.hf_model_name)


def run_open_source_job(
    job: UnslothFinetuningJob,
    dataset: list[DatasetRow],
    output_path: Path,
    **sft_overrides: Any,
) -> Model:
    """Fine-tune `job.source_model` with LoRA on `dataset` and return the student model.

    The adapter and tokenizer are trained in a temporary folder and renamed to
    `adapter_dir_for(output_path)` when done. If that folder already holds a finished adapter
    of the same job (same `job.model_hash()`), nothing is trained again. The adapter is pushed
    to the Hub as `job.hf_model_name` when that and HF_TOKEN are set.

    Args:
        job: The fine-tuning job.
        dataset: Prompt/completion rows; subsampled to `job.max_dataset_size` with `job.seed`.
        output_path: Where the caller writes the model JSON; the adapter goes next to it.
        **sft_overrides: Extra TRL `SFTConfig` fields (e.g. `max_steps`), for experiments only.

    Returns:
        Model(id=<adapter folder or Hub repo id>, type="open_source", parent_model=source).

    Raises:
        UserError: Empty dataset, an adapter folder of another job, unusable settings.
    """
    if job.source_model.type != "open_source":
        raise UserError(
            f"source_model {job.source_model.id!r} has type {job.source_model.type!r}; "
            "LoRA fine-tuning needs type='open_source' (use OpenAIFTJob for OpenAI models)"
        )
    adapter_dir = adapter_dir_for(Path(output_path))
    marker = _check_existing(job, adapter_dir)
    if marker is not None:
        logger.info(
            "adapter for job {} already in {}; not retraining", job.model_hash(), adapter_dir
        )
        hub_id = marker.get("hub_id") or _push(job, adapter_dir)
        if hub_id and not marker.get("hub_id"):
            _write_marker(adapter_dir, {**marker, "hub_id": hub_id})
        return _model_for(job, adapter_dir, hub_id)

    rows = job.training_rows(dataset)
    from sl.external.hf_driver import resolve_model_path
    from sl.finetuning.lora_train import train_adapter

    base_path = resolve_model_path(job.source_model.id)
    adapter_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = adapter_dir.parent / f".{adapter_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    try:
        stats = train_adapter(job, rows, base_path, tmp_dir, **sft_overrides)
        record = {
            "job_hash": job.model_hash(),
            "job": job.model_dump(mode="json"),
            "base_path": str(base_path),
            "backend": stats.backend,
            "n_rows": len(rows),
            "steps": stats.steps,
            "train_loss": stats.train_loss,
            "seconds": round(stats.seconds, 2),
        }
        _write_marker(tmp_dir, record)
        if adapter_dir.exists():  # another process finished the same job meanwhile
            _check_existing(job, adapter_dir)
        else:
            tmp_dir.rename(adapter_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("saved adapter to {}", adapter_dir)
    hub_id = _push(job, adapter_dir)
    if hub_id:
        _write_marker(adapter_dir, {**record, "hub_id": hub_id})
    return _model_for(job, adapter_dir, hub_id)


def _write_marker(folder: Path, record: dict[str, Any]) -> None:
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(folder / MARKER)
