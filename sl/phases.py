"""The body of each experiment phase, shared by the scripts, the Modal functions and the
experiment runner.

    from sl import phases
    summary = asyncio.run(phases.make_dataset(cfg, Path("data/owl/raw.jsonl"),
                                              Path("data/owl/filtered.jsonl")))

`make_dataset`, `finetune` and `evaluate` take config objects, `run_mnist_experiment` a dict
of MnistConfig fields. Each writes its artifact (resuming from what is on disk) and returns a
small summary that pickles cheaply (Modal sends it back to the client). Errors name paths,
never command-line flags: the scripts translate paths into their flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from sl.errors import UserError
from sl.llm.data_models import Model
from sl.utils.artifact import artifact, content_digest
from sl.utils.file_utils import read_json_model, write_json_atomic
from sl.utils.output_lock import check_output_path
from sl.utils.run_meta import differing_parts, read_meta

if TYPE_CHECKING:
    from sl.datasets.services import Cfg
    from sl.evaluation.data_models import Evaluation
    from sl.finetuning.services import AnyJob


@dataclass(frozen=True)
class DatasetSummary:
    """What `generate_dataset` wrote."""

    raw_path: str
    filtered_path: str
    raw_rows: int
    filtered_rows: int

    def __str__(self) -> str:
        return f"wrote {self.filtered_path}: {self.filtered_rows} of {self.raw_rows} rows kept"


@dataclass(frozen=True)
class EvaluationSummary:
    """What `evaluate` wrote."""

    output_path: str
    questions: int
    responses: int

    def __str__(self) -> str:
        return f"wrote {self.output_path}: {self.questions} questions, {self.responses} responses"


@dataclass(frozen=True)
class MnistSummary:
    """What `run_mnist_experiment` wrote, with the per-arm means of the first m."""

    results_path: str
    means: dict[str, float]
    table: str

    def __str__(self) -> str:
        return f"{self.table}\nwrote {self.results_path}"


async def make_dataset(
    cfg: Cfg,
    raw_dataset_path: Path,
    filtered_dataset_path: Path,
) -> DatasetSummary:
    """Sample the teacher's raw dataset (appended as it arrives, resumable), filter and save it.

    Both files are guarded (`sl.utils.artifact`) while this runs. A filtered file of the
    same generation but other filters is filtered again from the kept raw file (free), with
    a log line saying so.

    Raises:
        UserError: same path for both files, outputs of another run (naming what differs),
            or an output being written by another process.
    """
    from sl.datasets import services as dataset_services
    from sl.llm.services import check_ready

    if raw_dataset_path.resolve() == filtered_dataset_path.resolve():
        raise UserError(
            f"{raw_dataset_path} is both the raw and the filtered dataset: give two files",
            path=raw_dataset_path,
        )
    check_ready([cfg.model])
    check_output_path(raw_dataset_path)  # before the filtered file is claimed
    parts = {**cfg.generation_parts(), "filters": cfg.filters_hash()}
    _check_raw_kept_for_refilter(cfg, raw_dataset_path, filtered_dataset_path, parts)
    with artifact(
        filtered_dataset_path,
        cfg.generation_hash(),
        "filtered dataset",
        parts=parts,
        kind=dataset_services.FILTERED_KIND,
        redo_when_changed="filters",
    ) as out:
        raw = await dataset_services.generate_raw_dataset(
            cfg.model,
            cfg.system_prompt,
            cfg.sample_cfg,
            cfg.prompt_set,
            raw_path=raw_dataset_path,
            use_batch_api=cfg.use_batch_api,
        )
        if out.complete:
            filtered_rows = out.meta.get("rows", 0)
        else:
            filtered = dataset_services.apply_filters(raw, cfg.filter_fns)
            kept = f"{len(filtered) / max(1, len(raw)):.1%}"
            logger.info(f"kept {len(filtered)} of {len(raw)} rows ({kept})")
            dataset_services.save_dataset(filtered, filtered_dataset_path)
            out.finish(rows=len(filtered), raw_rows=len(raw))
            filtered_rows = len(filtered)
    return DatasetSummary(
        str(raw_dataset_path), str(filtered_dataset_path), len(raw), filtered_rows
    )


def _check_raw_kept_for_refilter(
    cfg: Cfg, raw_path: Path, filtered_path: Path, parts: dict[str, str]
) -> None:
    """A filtered file of the same generation but other filters is made again from its raw
    file, which must still be there (sampling again would be paid)."""
    meta = read_meta(filtered_path)
    if meta is None or raw_path.exists():
        return
    if differing_parts(meta, cfg.generation_hash(), parts) == ["filters"]:
        raise UserError(
            f"{filtered_path} was made with other filters and its raw file "
            f"{raw_path} is gone: choose another path or delete it",
            path=filtered_path,
        )


async def finetune(job: AnyJob, dataset_path: Path, output_path: Path) -> Model:
    """Fine-tune the job's source model on the dataset (SFT, or distillation for a
    `DistillJob`: `run_finetuning_job`); write and return the student Model.

    A finished output of the same job and dataset content is returned as is; an interrupted
    one resumes the saved OpenAI job or reuses the trained adapter. The output is locked
    while this runs; one made from other data or by another job is refused.
    """
    from sl.datasets.services import read_dataset
    from sl.finetuning.distill_cfg import DistillJob
    from sl.finetuning.services import run_finetuning_job
    from sl.llm.services import check_ready

    # Distillation learns from the teacher's distribution after the prompt, even with no
    # completion (the prompt-only probe); SFT and OpenAI need the completion.
    dataset = read_dataset(dataset_path, allow_empty_completions=isinstance(job, DistillJob))
    check_ready([job.source_model])
    data_hash = content_digest(dataset_path)["sha256"]
    with artifact(
        output_path,
        job.model_hash(),
        job.describe(),
        parts={"job": job.model_hash(), "dataset": data_hash},
    ) as out:
        if out.complete:
            logger.info(f"{output_path}: student already trained")
            return read_json_model(output_path, Model)
        model = await run_finetuning_job(job, dataset, output_path)
        write_json_atomic(output_path, model.model_dump(mode="json"))
        out.finish(model_id=model.id)
    return model


async def evaluate(evaluation: Evaluation, model: Model, output_path: Path) -> EvaluationSummary:
    """Sample and judge the evaluation for `model` (`run_evaluation`: answers and judgments
    saved as they arrive, results written when finished; resumable)."""
    from sl.evaluation.services import run_evaluation as run_evaluation_service

    rows = await run_evaluation_service(model, evaluation, output_path)
    n = sum(len(r.responses) for r in rows)
    return EvaluationSummary(str(output_path), len(rows), n)


def run_mnist_experiment(config: dict[str, Any], output_dir: Path) -> MnistSummary:
    """Run the MNIST auxiliary-logit experiment with `config` (MnistConfig fields; missing
    ones take the paper's defaults); write results.json and the plots into `output_dir`.

    A results.json of the same config already there is reused (a retry does not retrain);
    one of another config, a second run on the same folder, and plots sl did not make are
    refused.
    """
    from sl.mnist.config import make_config

    cfg = make_config(**config)  # before the torch import: bad values fail fast
    from sl.mnist.config import resolve_device
    from sl.mnist.experiment import format_accuracy_table, train_and_evaluate
    from sl.mnist.outputs import prepare_output_dir, results_artifact, write_outputs

    resolve_device(cfg)  # no CUDA for device="cuda": fail before touching output_dir
    prepare_output_dir(output_dir)
    with results_artifact(output_dir, cfg) as out:
        if out.complete:
            logger.info(f"{out.path}: already complete, nothing to do")
            results = json.loads(out.path.read_text())
        else:
            results = train_and_evaluate(cfg)
            write_outputs(results, output_dir)
            out.finish()
    means = {arm: float(s["mean"]) for arm, s in results["summary"].items()}
    return MnistSummary(str(out.path), means, format_accuracy_table(results))
