"""The phase commands: for each phase the scripts and the Modal functions run, its config
type, the files it reads and writes, how it runs on them and its one-line summary. The local
scripts (`scripts/cli.py`) and the Modal functions (`modal_app.py`) are built from this one
table.

    command = COMMANDS["generate_dataset"]
    cfg = load_config("cfgs/preference_numbers/cfgs.py", "owl_dataset_cfg",
                      command.config_class(), ["prompt_set.size=100"])
    print(command.summary(command.run(cfg, raw, filtered), [raw, filtered]))
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sl import phases
from sl.llm.data_models import Model
from sl.utils.file_utils import read_json_model


@dataclass(frozen=True)
class PathArg:
    """A file a phase reads or writes, named like its argument: the scripts' flag and the
    Modal function's parameter (`raw_dataset_path`)."""

    name: str
    help: str
    folder: str  # what it holds: datasets, models or results (the original Modal scripts' folder)
    default: str | None = None  # an output's file name in its run's folder; None: an input
    model_json: bool = False  # the model JSON of a model the phase runs


@dataclass(frozen=True)
class PhaseCommand:
    """One phase as a command: the config object (a variable of a config module), the files
    (`paths`, in the order `run` takes them) → `run` → a result and its summary line."""

    config_type: str  # module:class of the config object, imported when needed
    paths: tuple[PathArg, ...]
    run: Callable[..., Any]  # (config, *paths) -> result, running the `sl.phases` function
    models: Callable[[Any], list[Model]]  # the config's models the phase runs (not model_json)
    summary: Callable[[Any, Sequence[Path | str]], str]  # (result, paths as given) -> line

    def config_class(self) -> type:
        """The config class (its module is imported now, not with this table)."""
        module, _, name = self.config_type.partition(":")
        return getattr(importlib.import_module(module), name)


def _generate(cfg: Any, raw: Path, filtered: Path) -> phases.DatasetSummary:
    return asyncio.run(phases.make_dataset(cfg, raw, filtered))


def _finetune(job: Any, dataset: Path, output: Path) -> Model:
    return asyncio.run(phases.finetune(job, dataset, output))


def _evaluate(evaluation: Any, model_path: Path, output: Path) -> phases.EvaluationSummary:
    model = read_json_model(model_path, Model)
    return asyncio.run(phases.evaluate(evaluation, model, output))


COMMANDS: dict[str, PhaseCommand] = {
    "generate_dataset": PhaseCommand(
        config_type="sl.datasets.services:Cfg",
        paths=(
            PathArg(
                "raw_dataset_path", "Raw dataset JSONL to write", "datasets", "raw_dataset.jsonl"
            ),
            PathArg(
                "filtered_dataset_path",
                "Filtered dataset JSONL to write",
                "datasets",
                "filtered_dataset.jsonl",
            ),
        ),
        run=_generate,
        models=lambda cfg: [cfg.model],
        summary=lambda summary, paths: str(summary),
    ),
    "finetune": PhaseCommand(
        config_type="sl.finetuning.data_models:FTJob",
        paths=(
            PathArg("dataset_path", "Dataset JSONL to train on", "datasets"),
            PathArg("output_path", "Model JSON to write", "models", "model.json"),
        ),
        run=_finetune,
        models=lambda job: [job.source_model],
        summary=lambda model, paths: f"wrote {paths[-1]}: {model.id}",
    ),
    "evaluate": PhaseCommand(
        config_type="sl.evaluation.data_models:Evaluation",
        paths=(
            PathArg("model_path", "Model JSON to evaluate", "models", model_json=True),
            PathArg("output_path", "Results JSONL to write", "results", "evaluation_results.jsonl"),
        ),
        run=_evaluate,
        models=lambda evaluation: [j.judge_model for j in evaluation.judgment_map.values()],
        summary=lambda summary, paths: str(summary),
    ),
}
