"""Fine-tuning of open models: adapter folder next to the model JSON, resumable, atomic.

`run_open_source_job(job, rows, Path("data/owl/student.json"))` trains and saves adapter +
tokenizer into `data/owl/student_adapter/` and returns `Model(id=<that folder>, ...)`. A full
fine-tune (`job.full_finetune`) saves fp32 weights + config + tokenizer into
`data/owl/student_weights/` instead (`student_dir_for`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loguru import logger

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.llm.data_models import Model
from sl.llm.engines import engine_of, models_where

MARKER = "sl_job.json"  # written last inside a finished adapter folder


def adapter_dir_for(output_path: Path) -> Path:
    """The adapter folder of a model JSON: `data/x/student.json` -> `data/x/student_adapter`."""
    return output_path.parent / f"{output_path.with_suffix('').name}_adapter"


def weights_dir_for(output_path: Path) -> Path:
    """The full-weights folder of a model JSON: `data/x/student.json` ->
    `data/x/student_weights`."""
    return output_path.parent / f"{output_path.with_suffix('').name}_weights"


def student_dir_for(output_path: Path, full_finetune: bool) -> Path:
    """Where a student's trained part goes: full weights or a LoRA adapter folder."""
    return weights_dir_for(output_path) if full_finetune else adapter_dir_for(output_path)


def read_marker(adapter_dir: Path) -> dict[str, Any] | None:
    """The job record of a finished adapter folder, or None if there is none."""
    try:
        return json.loads((adapter_dir / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _model_for(job: UnslothFinetuningJob, adapter_dir: Path, hub_id: str | None) -> Model:
    return Model(id=hub_id or str(adapter_dir), type="open_source", parent_model=job.source_model)


def finished_adapter(adapter_dir: Path, job_hash: str, what: str) -> dict[str, Any] | None:
    """The marker of a finished adapter of the job `job_hash` in `adapter_dir`, or None when
    there is no adapter yet.

    Raises:
        UserError: the folder holds another job's adapter, or one not made by sl.
    """
    if not adapter_dir.exists():
        return None
    marker = read_marker(adapter_dir)
    if marker is None or marker.get("job_hash") != job_hash:
        raise UserError(
            f"{adapter_dir} already exists and holds another {what}; "
            "delete it or choose another output path",
            path=adapter_dir,
        )
    return marker


@contextmanager
def adapter_tmp_dir(adapter_dir: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `adapter_dir` to train into (removed afterwards)."""
    adapter_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = adapter_dir.parent / f".{adapter_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_adapter(tmp: Path, adapter_dir: Path, record: dict[str, Any]) -> None:
    """Write the marker `record` (with "job_hash") into `tmp`, then rename it to
    `adapter_dir`: a folder with a marker is always a finished adapter."""
    _write_marker(tmp, record)
    for path in tmp.rglob("*"):  # safetensors writes 0600 files; the rest of sl is 0644
        path.chmod(0o755 if path.is_dir() else 0o644)
    tmp.chmod(0o755)
    if adapter_dir.exists():  # another process finished the same job meanwhile
        finished_adapter(adapter_dir, record["job_hash"], "fine-tune")
    else:
        tmp.rename(adapter_dir)


def save_student(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save a trained student and its tokenizer into `folder`: a PEFT model's adapter, or a
    full model's weights (cast to fp32: Unsloth may train bf16 weights) + config."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        model.float()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def _push(job: UnslothFinetuningJob, adapter_dir: Path) -> str | None:
    if not job.hf_model_name:
        return None
    from sl.external.hf_hub import push_to_hub

    return push_to_hub(adapter_dir, job.hf_model_name)


def run_open_source_job(
    job: UnslothFinetuningJob,
    dataset: list[DatasetRow],
    output_path: Path,
    stop: threading.Event | None = None,
    **sft_overrides: Any,
) -> Model:
    """Fine-tune `job.source_model` (LoRA, or every weight with `job.full_finetune`) on
    `dataset` and return the student model.

    The adapter (or full fp32 weights) and tokenizer are trained in a temporary folder and
    renamed to `student_dir_for(output_path, job.full_finetune)` when done. If that folder
    already holds a finished student of the same job (same `job.model_hash()`), nothing is
    trained again. The trainer's state is saved beside that folder (`<folder>.checkpoint/`)
    now and then and when `stop` is set, and a rerun resumes from it. The folder is pushed to
    the Hub as `job.hf_model_name` when that and HF_TOKEN are set.

    Args:
        job: The fine-tuning job.
        dataset: Prompt/completion rows; subsampled to `job.max_dataset_size` with `job.seed`.
        output_path: Where the caller writes the model JSON; the adapter goes next to it.
        stop: Set from another thread to stop the training at the end of its step (its state
            saved; TrainingStopped is raised).
        **sft_overrides: Extra TRL `SFTConfig` fields (e.g. `max_steps`), for experiments only.

    Returns:
        Model(id=<adapter or weights folder, or Hub repo id>, type="open_source",
        parent_model=source).

    Raises:
        UserError: Empty dataset, an adapter folder of another job, unusable settings.
    """
    if engine_of(job.source_model).fine_tunes != "lora":
        raise UserError(
            f"source_model {job.source_model.id!r} has type {job.source_model.type!r}; "
            f"open-model fine-tuning needs {models_where(lambda e: e.fine_tunes == 'lora')} (use "
            "OpenAIFTJob for OpenAI models)"
        )
    adapter_dir = student_dir_for(Path(output_path), job.full_finetune)
    marker = finished_adapter(adapter_dir, job.model_hash(), "fine-tune")
    if marker is not None:
        logger.info(
            "student of job {} already in {}; not retraining", job.model_hash(), adapter_dir
        )
        hub_id = marker.get("hub_id") or _push(job, adapter_dir)
        if hub_id and not marker.get("hub_id"):
            _write_marker(adapter_dir, {**marker, "hub_id": hub_id})
        return _model_for(job, adapter_dir, hub_id)

    rows = job.training_rows(dataset)
    from sl.external.hf_hub import resolve_model_path
    from sl.finetuning.lora_train import train_adapter

    base_path = resolve_model_path(job.source_model.id)
    checkpoint_dir = adapter_dir.with_name(adapter_dir.name + ".checkpoint")
    with adapter_tmp_dir(adapter_dir) as tmp_dir:
        stats = train_adapter(job, rows, base_path, tmp_dir, checkpoint_dir, stop, **sft_overrides)
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
        publish_adapter(tmp_dir, adapter_dir, record)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    logger.info("saved the student to {}", adapter_dir)
    hub_id = _push(job, adapter_dir)
    if hub_id:
        _write_marker(adapter_dir, {**record, "hub_id": hub_id})
    return _model_for(job, adapter_dir, hub_id)


def _write_marker(folder: Path, record: dict[str, Any]) -> None:
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(folder / MARKER)
