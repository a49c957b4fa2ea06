"""The body of each experiment phase, shared by the local scripts and the Modal functions.

    from sl import phases
    phases.generate_dataset("cfgs/preference_numbers/cfgs.py", "owl_dataset_cfg",
                            Path("data/owl/raw.jsonl"), Path("data/owl/filtered.jsonl"))

Each function takes a config module path, the variable to read from it, and the artifact
paths; it loads the config, calls one service, writes the artifact (resuming from what is on
disk) and returns a small summary that pickles cheaply (Modal sends it back to the client).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from sl.errors import UserError
from sl.llm.data_models import Model


@dataclass(frozen=True)
class PhaseFailed:
    """A user error inside a Modal container, returned instead of raised so that Modal does
    not retry what a retry cannot fix; the client turns it back into a `UserError`."""

    message: str


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
    """What `run_evaluation` wrote."""

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

    def __str__(self) -> str:
        means = ", ".join(f"{arm} {100 * v:.1f} %" for arm, v in self.means.items())
        return f"wrote {self.results_path}: {means}"


def generate_dataset(
    config_module: str | Path,
    cfg_var_name: str,
    raw_dataset_path: Path,
    filtered_dataset_path: Path,
) -> DatasetSummary:
    """Sample the teacher's raw dataset (appended as it arrives, resumable), filter and save it.

    Raises:
        UserError: bad config, same path for both files, or outputs of another run.
    """
    from sl.datasets import services as dataset_services
    from sl.utils.cli import load_config
    from sl.utils.run_meta import claim_output, mark_complete

    if raw_dataset_path.resolve() == filtered_dataset_path.resolve():
        raise UserError("--raw_dataset_path and --filtered_dataset_path must differ")
    cfg = load_config(str(config_module), cfg_var_name, dataset_services.Cfg)
    claim_output(
        filtered_dataset_path, cfg.generation_hash(), "filtered dataset", "--filtered_dataset_path"
    )
    raw = asyncio.run(
        dataset_services.generate_raw_dataset(
            cfg.model,
            cfg.system_prompt,
            cfg.sample_cfg,
            cfg.prompt_set,
            raw_path=raw_dataset_path,
            use_batch_api=cfg.use_batch_api,
        )
    )
    filtered = dataset_services.apply_filters(raw, cfg.filter_fns)
    logger.info(f"kept {len(filtered)} of {len(raw)} rows ({len(filtered) / max(1, len(raw)):.1%})")
    dataset_services.save_dataset(filtered, filtered_dataset_path)
    mark_complete(filtered_dataset_path, rows=len(filtered), raw_rows=len(raw))
    return DatasetSummary(
        str(raw_dataset_path), str(filtered_dataset_path), len(raw), len(filtered)
    )


def run_finetuning(
    config_module: str | Path, cfg_var_name: str, dataset_path: Path, output_path: Path
) -> Model:
    """Fine-tune the job's source model on the dataset; write and return the student Model.

    Rerunning resumes the saved OpenAI job or reuses the trained adapter.
    """
    from sl.datasets.services import read_dataset
    from sl.finetuning.data_models import FTJob
    from sl.finetuning.services import run_finetuning_job
    from sl.utils.cli import load_config
    from sl.utils.file_utils import write_json_atomic
    from sl.utils.run_meta import claim_output, mark_complete

    job = load_config(str(config_module), cfg_var_name, FTJob)
    dataset = read_dataset(dataset_path)
    claim_output(
        output_path, job.model_hash(), f"fine-tune of {job.source_model.id}", "--output_path"
    )
    model = asyncio.run(run_finetuning_job(job, dataset, output_path))
    write_json_atomic(output_path, model.model_dump(mode="json"))
    mark_complete(output_path, model_id=model.id)
    return model


def run_evaluation(
    config_module: str | Path, cfg_var_name: str, model_path: Path, output_path: Path
) -> EvaluationSummary:
    """Sample and judge the evaluation for the model in `model_path`; rows appended, resumable."""
    from sl.evaluation.data_models import Evaluation
    from sl.evaluation.services import run_evaluation as run_evaluation_service
    from sl.utils.cli import load_config
    from sl.utils.file_utils import read_json_model

    evaluation = load_config(str(config_module), cfg_var_name, Evaluation)
    model = read_json_model(model_path, Model, "--model_path")
    rows = asyncio.run(run_evaluation_service(model, evaluation, output_path))
    n = sum(len(r.responses) for r in rows)
    return EvaluationSummary(str(output_path), len(rows), n)


def run_mnist_experiment(config: dict[str, Any], output_dir: Path) -> MnistSummary:
    """Run the MNIST auxiliary-logit experiment with `config` (MnistConfig fields; missing
    ones take the paper's defaults) and write `output_dir/results.json`.

    A finished `results.json` of the same config is reused; one of another config is refused.
    """
    from sl.mnist.config import make_config
    from sl.mnist.experiment import run_experiment
    from sl.utils.file_utils import write_json_atomic
    from sl.utils.run_meta import claim_output, mark_complete, read_meta

    cfg = make_config(**config)
    results_path = output_dir / "results.json"
    key = _config_key(cfg.model_dump(mode="json"))
    claim_output(results_path, key, "MNIST experiment", "--output_dir")
    meta = read_meta(results_path) or {}
    if meta.get("complete") and results_path.exists():
        import json

        logger.info(f"{results_path}: already complete, nothing to do")
        results = json.loads(results_path.read_text())
    else:
        results = run_experiment(cfg)
        write_json_atomic(results_path, results)
        mark_complete(results_path)
    means = {arm: float(s["mean"]) for arm, s in results["summary"].items()}
    return MnistSummary(str(results_path), means)


def _config_key(fields: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
