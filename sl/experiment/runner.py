"""Run an experiment stage by stage; every artifact on disk, every stage resumable.

Layout under the output folder (<t> teacher replicate, <r> student run; teacher replicate 0
keeps the teacher's name, replicate t > 0 is named <teacher>_t<t>, `TeacherRun.name`):
    experiment.json                          the config (a different config here is refused)
    teachers/<teacher>[_t<t>]/trait.jsonl, model.json   fine-tuned teachers (transfer.py)
    datasets/<teacher>[_t<t>]/raw.jsonl      teacher completions, appended as they arrive
    datasets/<teacher>[_t<t>]/filtered.jsonl rows kept by the numbers filter
    students/<teacher>/run<r>/model.json     student run r (adapter beside it), r < n_runs
    evaluations/<model>/<evaluation>.jsonl   sampled answers ('sampled' eval mode)
    evaluations/<model>/<evaluation>.logprob.json   P(target) per question, every target
    results.csv, results.json, results.png, timings.json

<model> is `base`, `<teacher>_run<r>` (students) or `teacher_<teacher>[_t<t>]` (fine-tuned
teachers). Each arm (control and every target) has n_runs = n_teacher_replicates x
n_student_replicates student runs: run r learns from teacher replicate r // n_student_replicates
(replicate 0 when the arm has one teacher, e.g. the base-model control) with the seed
student_job.seed + r, so run r of every arm starts from the same seed. Every model is scored
on every target; the report (report.py) treats each run as one unit.
"""

import time
from collections.abc import Sequence
from pathlib import Path

from loguru import logger
from tqdm import tqdm

from sl import phases
from sl.errors import UserError
from sl.evaluation.analysis import analyze_runs, analyze_scores
from sl.evaluation.logprob import run_logprob_evaluation
from sl.evaluation.services import read_evaluation_results
from sl.experiment import transfer
from sl.experiment.data_models import (
    BASE,
    CONTROL,
    STAGES,
    ExperimentCfg,
    StudentRun,
    TeacherRun,
)
from sl.experiment.report import (
    DatasetSize,
    ExperimentReport,
    report_panel,
    write_report,
)
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_file, read_json_model, write_json_atomic
from sl.utils.output_lock import output_lock
from sl.utils.run_meta import read_meta


class ExperimentPaths:
    """Where each artifact of an experiment lives."""

    def __init__(self, root: Path):
        self.root = root

    def raw(self, teacher: TeacherRun) -> Path:
        return self.root / "datasets" / teacher.name / "raw.jsonl"

    def filtered(self, teacher: TeacherRun) -> Path:
        return self.root / "datasets" / teacher.name / "filtered.jsonl"

    def student(self, run: StudentRun) -> Path:
        return self.root / "students" / run.teacher / f"run{run.run}" / "model.json"

    def evaluation(self, model_name: str, evaluation: str) -> Path:
        return self.root / "evaluations" / model_name / f"{evaluation}.jsonl"

    def logprob(self, model_name: str, evaluation: str) -> Path:
        return transfer.logprob_path(self.root, model_name, evaluation)


def teacher_model_name(teacher: TeacherRun) -> str:
    """A fine-tuned teacher's name in evaluations/."""
    return f"teacher_{teacher.name}"


def conditions(cfg: ExperimentCfg) -> dict[str, list[str]]:
    """The report's conditions -> the model names of their runs: base, the control and target
    students, and `teacher_<teacher>` for fine-tuned teachers."""
    out = {BASE: [BASE]}
    for teacher in cfg.teachers:
        out[teacher] = [run.name for run in cfg.student_runs(teacher)]
    for teacher in cfg.teachers:
        if cfg.finetuned_teacher(teacher):
            replicates = cfg.teacher_replicates(teacher)
            out[f"teacher_{teacher}"] = [teacher_model_name(t) for t in replicates]
    return out


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
                f"{root} holds a different experiment ({path}; "
                f"{', '.join(differ)} differ): choose another folder or delete it",
                path=root,
            )
        return
    foreign = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    if foreign:
        raise UserError(
            f"{root} already holds files not made by an experiment "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}) and no "
            f"experiment.json: choose a new or empty folder",
            path=root,
        )
    write_json_atomic(
        path, {"config_hash": cfg.model_hash(), "config": cfg.model_dump(mode="json")}
    )


async def generate_teacher_dataset(
    cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun
) -> None:
    """Sample and filter one teacher replicate's dataset (resumes a partial raw file); a
    fine-tuned teacher is trained first."""
    model = await transfer.teacher_model(cfg, paths.root, teacher)
    summary = await phases.make_dataset(
        cfg.dataset_cfg(teacher.teacher, model),
        paths.raw(teacher),
        paths.filtered(teacher),
    )
    if summary.filtered_rows == 0:
        raise UserError(
            f"teacher {teacher.name!r} kept 0 of {summary.raw_rows} rows after filtering "
            f"({summary.raw_path}): loosen numbers_filter or raise sample_cfg.max_tokens"
        )


async def train_student(cfg: ExperimentCfg, paths: ExperimentPaths, run: StudentRun) -> None:
    """Fine-tune (or distill) one student run on its teacher replicate's kept rows."""
    dataset, out = paths.filtered(run.source), paths.student(run)
    if cfg.student_training == "distill":
        await transfer.distill_run(cfg, paths.root, run, dataset, out)
    else:
        await phases.finetune(cfg.student_job_of(run), dataset, out)


def _models(cfg: ExperimentCfg, paths: ExperimentPaths) -> dict[str, Model]:
    """Every model to score, by its name in evaluations/."""
    models = {BASE: cfg.teacher_model}
    for teacher in cfg.teachers:
        for run in cfg.student_runs(teacher):
            models[run.name] = read_json_model(paths.student(run), Model, "student model")
    for teacher in cfg.teachers:
        if cfg.finetuned_teacher(teacher):
            for t in cfg.teacher_replicates(teacher):
                models[teacher_model_name(t)] = transfer.trained_teacher(cfg, paths.root, t)
    return models


async def evaluate_models(cfg: ExperimentCfg, paths: ExperimentPaths) -> None:
    """Every evaluation on the base model, every student run and every fine-tuned teacher, in
    each of `cfg.eval_modes`: sampled answers (scored later on every target) and the exact
    P(target) of every target."""
    for name, model in _models(cfg, paths).items():
        for eval_name, evaluation in cfg.evaluations.items():
            if "sampled" in cfg.eval_modes:
                logger.info(f"evaluating {name} on {eval_name}")
                await phases.evaluate(evaluation, model, paths.evaluation(name, eval_name))
            if "logprob" in cfg.eval_modes:
                logger.info(f"logprob evaluation of {name} on {eval_name}")
                run_logprob_evaluation(
                    model, evaluation.questions, cfg.targets, paths.logprob(name, eval_name)
                )


def report(cfg: ExperimentCfg, paths: ExperimentPaths) -> ExperimentReport:
    """Analyse every evaluation in every eval mode (runs as the unit); write
    results.csv/json/png and return the report."""
    runs_of = conditions(cfg)
    panels = []
    for eval_name in cfg.evaluations:
        for metric in cfg.eval_modes:
            if metric == "sampled":
                runs = {
                    c: [read_evaluation_results(paths.evaluation(m, eval_name)) for m in models]
                    for c, models in runs_of.items()
                }
                analysis = analyze_runs(runs, cfg.targets, CONTROL, BASE, match="word")
            else:
                scores = {
                    c: [transfer.read_logprob(paths.root, m, eval_name) for m in models]
                    for c, models in runs_of.items()
                }
                analysis = analyze_scores(scores, cfg.targets, CONTROL, BASE)
            panels.append(report_panel(eval_name, metric, analysis))
    datasets = {}
    for teacher in cfg.teachers:
        for t in cfg.teacher_replicates(teacher):
            meta = read_meta(paths.filtered(t)) or {}
            datasets[t.name] = DatasetSize(
                raw_rows=meta.get("raw_rows", 0), filtered_rows=meta.get("rows", 0)
            )
    result = ExperimentReport(conditions=runs_of, datasets=datasets, panels=panels)
    write_report(result, paths.root)
    return result


async def run_experiment(
    cfg: ExperimentCfg, output_dir: Path, stages: Sequence[str] = STAGES
) -> ExperimentReport | None:
    """Run the chosen stages in order; finished work on disk is skipped, partial work resumed.

    Returns the report when the report stage ran.
    """
    from sl.llm.services import check_ready

    paths = ExperimentPaths(Path(output_dir))
    judges = [j.judge_model for e in cfg.evaluations.values() for j in e.judgment_map.values()]
    check_ready([cfg.teacher_model, cfg.student_job.source_model, *judges])
    with output_lock(paths.root, is_dir=True):
        _claim_output_dir(cfg, paths.root)
        return await _run_stages(cfg, paths, stages)


async def _run_stages(
    cfg: ExperimentCfg, paths: ExperimentPaths, stages: Sequence[str]
) -> ExperimentReport | None:
    timings_path = paths.root / "timings.json"
    timings = read_json_file(timings_path, "timings") if timings_path.exists() else {}
    if not isinstance(timings, dict):
        timings = {}
    steps: list[tuple[str, TeacherRun | StudentRun | None]] = []
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage == "generate":
            steps += [(stage, t) for arm in cfg.teachers for t in cfg.teacher_replicates(arm)]
        elif stage == "finetune":
            steps += [(stage, run) for arm in cfg.teachers for run in cfg.student_runs(arm)]
        else:
            steps.append((stage, None))
    result = None
    with tqdm(steps, desc="experiment", unit="step") as progress:
        for stage, item in progress:
            progress.set_postfix_str(f"{stage} {item.name if item else ''}".strip())
            start = time.perf_counter()
            if isinstance(item, TeacherRun):
                await generate_teacher_dataset(cfg, paths, item)
            elif isinstance(item, StudentRun):
                await train_student(cfg, paths, item)
            elif stage == "evaluate":
                await evaluate_models(cfg, paths)
            else:
                result = report(cfg, paths)
            # Summed over reruns: a resumed stage adds its remaining time, a skipped one ~0.
            key = f"{stage}/{item.name}" if item else stage
            timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - start, 2)
            write_json_atomic(timings_path, timings)
    return result
