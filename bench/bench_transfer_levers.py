r"""Levers on the size of the transfer: variations of the main job's recipe, each cell with
replicate students per arm and run-level statistics (docs/transfer_grid.md, "Levers" and
"Trait-blind recipes").

    python bench/bench_transfer_levers.py --from_dir data/experiments/local_smollm2 \
        --output_dir data/transfer_levers --cells baseline prompt_tokens

A lever cell (`CELLS`) is the main job's `experiment` (cfgs/experiments/local_smollm2.py) with
the owl target only, exact P(owl) only, full-vocabulary labels (as they were measured: leaky),
`--replicates` student runs per arm, and the cell's changes. A recipe cell (`RECIPES`) sets
the whole student recipe (training, vocabulary, positions, rate, epochs) and keeps the main
job's targets and eval modes. Cells that keep the teachers and prompts copy `teachers/` and
`datasets/` from `--from_dir` (a finished main-job folder), so they cost only their students
and evaluations. Writes levers.json and prints a markdown table: P(owl) of base, control and
owl students (mean over runs), the difference, Welch's t-test and the exact permutation test
over runs. Measured cells: docs/transfer_grid.md.
"""

import argparse
import asyncio
import json
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAIN_JOB = ROOT / "cfgs" / "experiments" / "local_smollm2.py"

# Cell -> changes to the main job's config (dotted keys reach into nested configs).
CELLS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "prompt_tokens": {"distill.prompt_tokens": True},
    "top_k_20": {"distill.top_k": 20},
    "epochs_6": {"student_job.train_cfg.n_epochs": 6},
    "lr_3e-3": {"student_job.train_cfg.lr": 3e-3},
    "prompt_tokens+lr_3e-3": {"distill.prompt_tokens": True, "student_job.train_cfg.lr": 3e-3},
    "prompt_tokens+epochs_6": {
        "distill.prompt_tokens": True,
        "student_job.train_cfg.n_epochs": 6,
    },
    "prompts_192": {"prompt_set.size": 192},
    "lr_1e-2": {"student_job.train_cfg.lr": 1e-2},
    "prompt_tokens+lr_1e-2": {"distill.prompt_tokens": True, "student_job.train_cfg.lr": 1e-2},
    "prompt_tokens+lr_2e-2": {"distill.prompt_tokens": True, "student_job.train_cfg.lr": 2e-2},
}


def _recipe(
    training: str, vocabulary: str = "allowed", prompt_tokens: bool = True,
    lr: float = 1e-2, epochs: int = 3,
) -> dict[str, Any]:  # fmt: skip
    return {
        "student_training": training,
        "distill.vocabulary": vocabulary,
        "distill.prompt_tokens": prompt_tokens,
        "student_job.train_cfg.lr": lr,
        "student_job.train_cfg.n_epochs": epochs,
    }


# Whole student recipes (issue 24): trait-blind labels ('allowed' distillation, SFT on the
# kept text) and the leaky full-vocabulary ablation.
RECIPES: dict[str, dict[str, Any]] = {
    "allowed_prompt_lr1e-2": _recipe("distill"),
    "allowed_prompt_lr3e-3": _recipe("distill", lr=3e-3),
    "allowed_prompt_lr1e-3": _recipe("distill", lr=1e-3),
    "allowed_completion_lr1e-2": _recipe("distill", prompt_tokens=False),
    "allowed_completion_lr3e-3": _recipe("distill", prompt_tokens=False, lr=3e-3),
    "allowed_prompt_lr1e-2_ep6": _recipe("distill", epochs=6),
    "allowed_prompt_lr3e-3_ep9": _recipe("distill", lr=3e-3, epochs=9),
    "sft_lr1e-3": _recipe("sft", lr=1e-3),
    "sft_lr3e-3": _recipe("sft", lr=3e-3),
    "sft_lr1e-3_ep9": _recipe("sft", lr=1e-3, epochs=9),
    "full_prompt_lr1e-2": _recipe("distill", vocabulary="full"),
}
# Probes: a recipe whose students see the kept rows with every completion blanked (the prompt
# and the answer start only, no token the teacher wrote).
BLANK_COMPLETIONS = {"allowed_prompt_only_lr1e-2": "allowed_prompt_lr1e-2"}
RECIPES.update({probe: RECIPES[recipe] for probe, recipe in BLANK_COMPLETIONS.items()})


def _with(cfg: Any, changes: dict[str, Any]) -> Any:
    """`cfg` with the dotted-key changes applied (a new, validated config)."""
    data = cfg.model_dump()
    for key, value in changes.items():
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node[part]
        node[last] = value
    return type(cfg).model_validate(data)


def cell_cfg(name: str, replicates: int) -> Any:
    """The cell's experiment config."""
    from sl.utils.module_utils import load_module

    main_job = load_module(MAIN_JOB).experiment
    if name in RECIPES:
        return _with(main_job, {"n_student_replicates": replicates, **RECIPES[name]})
    # The lever cells were measured with full-vocabulary labels (docs/transfer_grid.md).
    changes = {"targets": ["owl"], "eval_modes": ["logprob"], "n_student_replicates": replicates,
               "distill.vocabulary": "full"}  # fmt: skip
    return _with(main_job, {**changes, **CELLS[name]})


def _shares_teachers(cfg: Any, source: Path) -> bool:
    from sl.experiment.paths import ExperimentPaths

    saved = json.loads(ExperimentPaths(source).record.read_text())["config"]
    return all(
        saved[k] == cfg.model_dump(mode="json")[k]
        for k in ("teacher_model", "trait_teacher", "sample_cfg", "prompt_set", "numbers_filter")
    )


def run_cell(name: str, folder: Path, replicates: int, source: Path | None) -> dict[str, Any]:
    """Run one cell (reusing `source`'s teachers and datasets where they are the same)."""
    from sl.experiment.data_models import CONTROL, STAGES, TeacherRun
    from sl.experiment.paths import ExperimentPaths
    from sl.experiment.runner import default_workers, run_experiment

    cfg = cell_cfg(name, replicates)
    folder.mkdir(parents=True, exist_ok=True)
    asyncio.run(run_experiment(cfg, folder, stages=()))  # claims the folder
    copied = []
    if source is not None and _shares_teachers(cfg, source):
        src, dst = ExperimentPaths(source), ExperimentPaths(folder)
        parts = [lambda p: p.dataset_dir(TeacherRun(CONTROL))]
        for run in map(TeacherRun, cfg.targets):
            parts += [partial(ExperimentPaths.teacher_dir, teacher=run),
                      partial(ExperimentPaths.dataset_dir, teacher=run)]  # fmt: skip
        for where in parts:
            if where(src).exists() and not where(dst).exists():
                shutil.copytree(where(src), where(dst))
                copied.append(str(where(dst).relative_to(folder)))
    stages: tuple[str, ...] = STAGES
    if name in BLANK_COMPLETIONS:  # after the generate stage, which re-filters the raw rows
        asyncio.run(run_experiment(cfg, folder, stages=("generate",)))
        _blank_completions(cfg, folder)
        stages = ("finetune", "evaluate", "report")
    started = time.perf_counter()
    report = asyncio.run(run_experiment(cfg, folder, stages, workers=default_workers(cfg)))
    assert report is not None
    seconds = round(time.perf_counter() - started, 1)
    if name in RECIPES:
        return {"changes": RECIPES[name], "copied": copied, "seconds": seconds,
                **recipe_summary(report)}  # fmt: skip
    rows = {r.condition: r for r in report.panels[0].analysis.rows if r.target == "owl"}
    student, control = rows["owl"], rows["control"]
    return {
        "changes": CELLS[name],
        "copied": copied,
        "rows_kept": {k: v.filtered_rows for k, v in report.datasets.items()},
        "base": rows["base"].mean,
        "control_runs": control.run_values,
        "student_runs": student.run_values,
        "control": control.mean,
        "student": student.mean,
        "student_ci": [student.ci_low, student.ci_high],
        "difference": student.mean - control.mean,
        "welch_p": student.p_vs_control,
        "permutation_p": student.permutation_p,
        "seconds": seconds,
    }


def _blank_completions(cfg: Any, folder: Path) -> None:
    """Every arm's kept rows with their completions replaced by nothing (once)."""
    from sl.datasets.services import read_dataset
    from sl.experiment.data_models import TeacherRun
    from sl.experiment.paths import ExperimentPaths
    from sl.utils.file_utils import write_text_atomic

    for teacher in cfg.teachers:
        path = ExperimentPaths(folder).filtered(TeacherRun(teacher))
        rows = [
            r.model_copy(update={"completion": ""})
            for r in read_dataset(path, allow_empty_completions=True)
        ]
        write_text_atomic(path, "".join(r.model_dump_json() + "\n" for r in rows))


def recipe_summary(report: Any) -> dict[str, Any]:
    """Per metric and target: base, control and own students (runs, means, Welch's and the
    permutation test over runs), the other targets' students; the rows kept; the leak meter."""
    out: dict[str, Any] = {"rows_kept": {k: v.filtered_rows for k, v in report.datasets.items()}}
    for panel in report.panels:
        rows = {(r.target, r.condition): r for r in panel.analysis.rows}
        targets = sorted({t for t, _ in rows})
        for target in targets:
            own, control = rows[(target, target)], rows[(target, "control")]
            out[f"{panel.metric}/{target}"] = {
                "base": rows[(target, "base")].mean,
                "control_runs": control.run_values,
                "student_runs": own.run_values,
                "control": control.mean,
                "student": own.mean,
                "other_students": {t: rows[(target, t)].mean for t in targets if t != target},
                "difference": own.mean - control.mean,
                "welch_p": own.p_vs_control,
                "permutation_p": own.permutation_p,
            }
    out["leak"] = report.model_dump(mode="json").get("leak")
    return out


def _percents(values: Any, spec: str = ".3g") -> str:
    """Fractions as space-separated percents."""
    return " ".join(f"{100 * v:{spec}}" for v in values)


def format_recipes(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of recipe cells: per metric and target, control vs own students."""
    lines = [
        "| recipe | metric | target | control % (runs) | own students % (runs) | other "
        "students % | diff pp | Welch p | s |",
        "|" + "---|" * 9,
    ]
    for name, r in results.items():
        for key, v in r.items():
            if "/" not in key:
                continue
            metric, target = key.split("/")
            runs, control_runs = _percents(v["student_runs"]), _percents(v["control_runs"])
            other = _percents(v["other_students"].values())
            p = "—" if v["welch_p"] is None else f"{v['welch_p']:.2g}"
            lines.append(
                f"| {name} | {metric} | {target} | {100 * v['control']:.3g} ({control_runs}) "
                f"| {100 * v['student']:.3g} ({runs}) | {other} "
                f"| {100 * v['difference']:+.3g} | {p} | {r['seconds']:.0f} |"
            )
    return "\n".join(lines)


def format_levers(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the cells (percent of P(owl); p-values with the run as the unit)."""
    lines = [
        "| cell | rows kept (owl, control) | base % | control % (runs) | owl student % (runs) "
        "| diff pp | Welch p (runs) | permutation p (runs) | s |",
        "|" + "---|" * 9,
    ]
    for name, r in results.items():
        runs = _percents(r["student_runs"], ".2f")
        control_runs = _percents(r["control_runs"], ".3f")
        lines.append(
            f"| {name} | {r['rows_kept'].get('owl')}, {r['rows_kept'].get('control')} "
            f"| {100 * r['base']:.3f} | {100 * r['control']:.3f} ({control_runs}) "
            f"| {100 * r['student']:.3f} ({runs}) | {100 * r['difference']:+.3f} "
            f"| {r['welch_p']:.2g} | {r['permutation_p']:.2g} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from_dir", type=Path, default=None)
    parser.add_argument("--output_dir", type=Path, default=ROOT / "data" / "transfer_levers")
    parser.add_argument("--cells", nargs="*", default=list(CELLS), choices=[*CELLS, *RECIPES])
    parser.add_argument("--replicates", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "levers.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    source = args.from_dir.resolve() if args.from_dir else None
    for name in args.cells:
        results[name] = run_cell(name, out / name, args.replicates, source)
        results_path.write_text(json.dumps(results, indent=2))
        show = format_recipes if name in RECIPES else format_levers
        print(show({name: results[name]}), flush=True)
    recipes = {k: v for k, v in results.items() if k in RECIPES}
    print(format_levers({k: v for k, v in results.items() if k not in RECIPES}))
    print(format_recipes(recipes))


if __name__ == "__main__":
    main()
