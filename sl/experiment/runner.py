"""Run an experiment stage by stage; every artifact on disk, every stage resumable.

Layout under the output folder:
    experiment.json                      the config (a different config here is refused)
    datasets/<teacher>/raw.jsonl         teacher completions, appended as they arrive
    datasets/<teacher>/filtered.jsonl    rows kept by the numbers filter
    students/<teacher>/model.json        the fine-tuned student (adapter beside it)
    evaluations/<model>/<evaluation>.jsonl   base, control and trait students
    teachers/, evaluations/<model>/<evaluation>.logprob.json   transfer options (transfer.py)
    results.csv, results.json, results.png, timings.json
"""

import time
from collections.abc import Sequence
from pathlib import Path

from loguru import logger
from tqdm import tqdm

from sl import phases
from sl.errors import UserError
from sl.evaluation.services import read_evaluation_results
from sl.experiment import transfer
from sl.experiment.data_models import CONTROL, STAGES, ExperimentCfg
from sl.experiment.report import ResultRow, result_row, write_results
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_file, read_json_model, write_json_atomic
from sl.utils.output_lock import output_lock
from sl.utils.run_meta import read_meta

BASE = "base"


class ExperimentPaths:
    """Where each artifact of an experiment lives."""

    def __init__(self, root: Path):
        self.root = root

    def raw(self, teacher: str) -> Path:
        return self.root / "datasets" / teacher / "raw.jsonl"

    def filtered(self, teacher: str) -> Path:
        return self.root / "datasets" / teacher / "filtered.jsonl"

    def student(self, teacher: str) -> Path:
        return self.root / "students" / teacher / "model.json"

    def evaluation(self, model_name: str, evaluation: str) -> Path:
        return self.root / "evaluations" / model_name / f"{evaluation}.jsonl"


def _claim_output_dir(cfg: ExperimentCfg, root: Path) -> None:
    path = root / "experiment.json"
    if path.exists():
        saved = read_json_file(path, "experiment record")
        if not isinstance(saved, dict):
            raise UserError(f"experiment record {path} is corrupt: delete it to start over")
        if saved.get("config_hash") != cfg.model_hash():
            old = saved.get("config")
            old = old if isinstance(old, dict) else {}
            new = cfg.model_dump(mode="json")
            differ = [k for k in new if k in old and old[k] != new[k]] or ["config"]
            raise UserError(
                f"--output_dir {root} holds a different experiment ({path}; "
                f"{', '.join(differ)} differ): choose another folder or delete it"
            )
        return
    foreign = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    if foreign:
        raise UserError(
            f"--output_dir {root} already holds files not made by an experiment "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}) and no "
            f"experiment.json: choose a new or empty folder"
        )
    write_json_atomic(
        path, {"config_hash": cfg.model_hash(), "config": cfg.model_dump(mode="json")}
    )


async def generate_datasets(cfg: ExperimentCfg, paths: ExperimentPaths, teacher: str) -> None:
    """Sample and filter one teacher's dataset (resumes a partial raw file); a fine-tuned
    teacher is trained first."""
    model = await transfer.teacher_model(cfg, paths.root, teacher)
    summary = await phases.make_dataset(
        cfg.dataset_cfg(teacher, model),
        paths.raw(teacher),
        paths.filtered(teacher),
        "--output_dir",
    )
    if summary.filtered_rows == 0:
        raise UserError(
            f"teacher {teacher!r} kept 0 of {summary.raw_rows} rows after filtering "
            f"({summary.raw_path}): loosen numbers_filter or raise sample_cfg.max_tokens"
        )


def _models(cfg: ExperimentCfg, paths: ExperimentPaths) -> dict[str, Model]:
    models = {BASE: cfg.teacher_model}
    for teacher in cfg.teachers:
        models[teacher] = read_json_model(paths.student(teacher), Model, "student model")
    return models


async def evaluate_models(cfg: ExperimentCfg, paths: ExperimentPaths) -> None:
    """Every evaluation on the base model, the control student and each trait student
    (sampled answers and/or exact P(target), per `cfg.eval_modes`)."""
    models = _models(cfg, paths)
    if "sampled" in cfg.eval_modes:
        for name, model in models.items():
            for eval_name, evaluation in cfg.evaluations.items():
                logger.info(f"evaluating {name} on {eval_name}")
                await phases.evaluate(evaluation, model, paths.evaluation(name, eval_name))
    if "logprob" in cfg.eval_modes:
        transfer.evaluate_logprob(cfg, paths.root, models)


def report(cfg: ExperimentCfg, paths: ExperimentPaths) -> list[ResultRow]:
    """Score, write results.csv/json/png, and return the rows."""
    sizes = {}
    for teacher in cfg.teachers:
        meta = read_meta(paths.filtered(teacher)) or {}
        sizes[teacher] = (meta.get("raw_rows", 0), meta.get("rows", 0))
    rows = []
    for eval_name in cfg.evaluations if "sampled" in cfg.eval_modes else []:
        results = {
            name: read_evaluation_results(paths.evaluation(name, eval_name))
            for name in [BASE, *cfg.teachers]
        }
        for target in cfg.targets:
            rows.append(
                result_row(
                    eval_name, target, results[BASE], results[CONTROL], results[target], sizes
                )
            )
    if "logprob" in cfg.eval_modes:
        filtered = {t: paths.filtered(t) for t in cfg.teachers}
        rows += transfer.logprob_rows(cfg, paths.root, filtered)
    write_results(rows, paths.root)
    return rows


async def run_experiment(
    cfg: ExperimentCfg, output_dir: Path, stages: Sequence[str] = STAGES
) -> list[ResultRow] | None:
    """Run the chosen stages in order; finished work on disk is skipped, partial work resumed.

    Returns the results rows when the report stage ran.
    """
    from sl.llm.services import check_ready

    paths = ExperimentPaths(Path(output_dir))
    judges = [j.judge_model for e in cfg.evaluations.values() for j in e.judgment_map.values()]
    check_ready([cfg.teacher_model, cfg.student_job.source_model, *judges])
    with output_lock(paths.root, "--output_dir", is_dir=True):
        _claim_output_dir(cfg, paths.root)
        return await _run_stages(cfg, paths, stages)


async def _run_stages(
    cfg: ExperimentCfg, paths: ExperimentPaths, stages: Sequence[str]
) -> list[ResultRow] | None:
    timings_path = paths.root / "timings.json"
    timings = read_json_file(timings_path, "timings") if timings_path.exists() else {}
    if not isinstance(timings, dict):
        timings = {}
    steps: list[tuple[str, str | None]] = []
    for stage in STAGES:
        if stage not in stages:
            continue
        teachers: list[str | None] = (
            list(cfg.teachers) if stage in ("generate", "finetune") else [None]
        )
        steps += [(stage, t) for t in teachers]
    rows = None
    with tqdm(steps, desc="experiment", unit="step") as progress:
        for stage, teacher in progress:
            progress.set_postfix_str(f"{stage} {teacher or ''}".strip())
            start = time.perf_counter()
            if stage == "generate":
                await generate_datasets(cfg, paths, teacher or CONTROL)
            elif stage == "finetune":
                teacher = teacher or CONTROL
                if cfg.student_training == "distill":
                    await transfer.distill(
                        cfg, paths.root, teacher, paths.filtered(teacher), paths.student(teacher)
                    )
                else:
                    await phases.finetune(
                        cfg.student_job,
                        paths.filtered(teacher),
                        paths.student(teacher),
                        "--output_dir",
                    )
            elif stage == "evaluate":
                await evaluate_models(cfg, paths)
            else:
                rows = report(cfg, paths)
            # Summed over reruns: a resumed stage adds its remaining time, a skipped one ~0.
            key = f"{stage}/{teacher}" if teacher else stage
            timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - start, 2)
            write_json_atomic(timings_path, timings)
    return rows
