"""Generate a teacher's numbers dataset, filter it, save and read it."""

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pydantic import ConfigDict, Field, model_validator

from sl.datasets.data_models import TRAINING, DatasetRow
from sl.datasets.nums_dataset import FilterFn, PromptGenerator, run_filter
from sl.errors import UserError
from sl.llm import services as llm_services
from sl.llm.data_models import HashableModel, LLMResponse, Model, SampleCfg
from sl.protocol import numbers_prompt_defaults
from sl.utils.artifact import Artifact, artifact
from sl.utils.config_model import MAX_LIST, MAX_ROWS, ConfigModel
from sl.utils.file_utils import JsonlAppender, read_jsonl, write_jsonl_atomic
from sl.utils.fingerprint import callables_hash
from sl.utils.progress_bar import tqdm
from sl.utils.run_meta import in_key_order, pending_indices

RAW_KIND = "raw dataset"
FILTERED_KIND = "filtered dataset"

_PAPER = numbers_prompt_defaults()  # the protocol's numbers_prompts.json "defaults"


def _paper_default(
    name: str, description: str, gt: int | None = None, ge: int | None = None, le: int | None = None
) -> Any:
    """A field whose default is the protocol's value of `name` (the paper's setting)."""
    return Field(default=_PAPER[name], description=description, gt=gt, ge=ge, le=le)


class NumsDatasetPromptSet(HashableModel):
    """A seeded set of numbers-task prompts (defaults: the paper's settings, from the
    protocol's numbers_prompts.json)."""

    size: int = _paper_default("size", "Number of prompts", gt=0, le=MAX_ROWS)
    seed: int = _paper_default("seed", "Seed of the prompts (paper: 42)")
    example_min_count: int = _paper_default("example_min_count", "Fewest example numbers", ge=1)
    example_max_count: int = _paper_default(
        "example_max_count", "Most example numbers + 1", ge=2, le=MAX_LIST
    )
    example_min_value: int = _paper_default("example_min_value", "Smallest example value", ge=0)
    example_max_value: int = _paper_default("example_max_value", "Largest example value + 1", ge=1)
    answer_count: int = _paper_default(
        "answer_count", "Numbers the teacher is asked for", ge=1, le=MAX_LIST
    )
    answer_max_digits: int = _paper_default(
        "answer_max_digits", "Most digits per answer number", ge=1
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> "NumsDatasetPromptSet":
        # Upper bounds are exclusive, as in the paper's code (9 gives 3..8 examples).
        if self.example_min_count >= self.example_max_count:
            raise ValueError(
                f"example_min_count {self.example_min_count} must be < example_max_count "
                f"{self.example_max_count} (the max is exclusive)"
            )
        if self.example_min_value >= self.example_max_value:
            raise ValueError(
                f"example_min_value {self.example_min_value} must be < example_max_value "
                f"{self.example_max_value} (the max is exclusive)"
            )
        return self

    def prompts(self) -> list[str]:
        """The prompts, deterministic for the seed (seed 42 gives the paper's prompts)."""
        generator = PromptGenerator(
            rng=np.random.default_rng(self.seed),
            **self.model_dump(exclude={"size", "seed"}),
        )
        # A progress bar only when it takes a while (millions of prompts: minutes).
        steps = tqdm(range(self.size), desc="numbers prompts", unit="prompt", delay=2, leave=False)
        return [generator.sample_query() for _ in steps]


class Cfg(ConfigModel):
    """A teacher dataset: who answers, with which system prompt, which prompts, which filters.

    `filter_fns` take (prompt, completion) and return True to keep the row.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Model = Field(description="The teacher that answers the prompts")
    system_prompt: str | None = Field(description="The teacher's trait (None: the control)")
    sample_cfg: SampleCfg = Field(description="The teacher's sampling settings")
    prompt_set: NumsDatasetPromptSet = Field(description="The numbers prompts")
    filter_fns: list[FilterFn] = Field(
        default_factory=list,
        description="(prompt, completion) -> True to keep the row (e.g. a `NumbersFilter`)",
    )
    use_batch_api: bool = Field(
        default=False,
        description="OpenAI models only: sample through the Batch API (half price, slow)",
    )

    def generation_hash(self) -> str:
        """Key of what `generate_raw_dataset` produces (filters do not change it)."""
        return _generation_hash(self.model, self.system_prompt, self.sample_cfg, self.prompt_set)

    def generation_parts(self) -> dict[str, str]:
        """The hash of each part of the config that decides the raw dataset."""
        return _generation_parts(self.model, self.system_prompt, self.sample_cfg, self.prompt_set)

    def filters_hash(self) -> str:
        """Fingerprint of `filter_fns` (code, constants and captured values)."""
        return callables_hash(self.filter_fns)


def _generation_hash(
    model: Model, system_prompt: str | None, sample_cfg: SampleCfg, prompt_set: NumsDatasetPromptSet
) -> str:
    parts = [
        model.model_hash(),
        sample_cfg.model_hash(),
        prompt_set.model_hash(),
        repr(system_prompt),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _generation_parts(
    model: Model, system_prompt: str | None, sample_cfg: SampleCfg, prompt_set: NumsDatasetPromptSet
) -> dict[str, str]:
    return {
        "model": model.model_hash(),
        "system_prompt": hashlib.sha256(repr(system_prompt).encode()).hexdigest()[:16],
        "sample_cfg": sample_cfg.model_hash(),
        "prompt_set": prompt_set.model_hash(),
    }


async def generate_raw_dataset(
    model: Model,
    system_prompt: str | None,
    sample_cfg: SampleCfg,
    prompt_set: NumsDatasetPromptSet,
    raw_path: Path | str | None = None,
    use_batch_api: bool = False,
) -> list[DatasetRow]:
    """Ask the teacher every prompt of `prompt_set`; one row per prompt.

    With `raw_path`, each row is appended to that JSONL file as it arrives, and a rerun with
    the same arguments skips the prompts already answered there (resume after a crash).
    """
    if sample_cfg.n != 1:
        raise UserError("dataset generation takes one completion per prompt: set SampleCfg(n=1)")
    llm_services.check_ready([model])
    if raw_path is None:
        return await _generate(model, system_prompt, sample_cfg, prompt_set, None, use_batch_api)
    with artifact(
        Path(raw_path),
        _generation_hash(model, system_prompt, sample_cfg, prompt_set),
        f"raw dataset of {model.id}",
        parts=_generation_parts(model, system_prompt, sample_cfg, prompt_set),
        kind=RAW_KIND,
    ) as out:
        if out.complete:
            rows = read_jsonl(out.path, DatasetRow)
            logger.info(f"{out.path}: all {len(rows)} rows already generated, nothing to do")
            return rows
        return await _generate(model, system_prompt, sample_cfg, prompt_set, out, use_batch_api)


async def _generate(
    model: Model,
    system_prompt: str | None,
    sample_cfg: SampleCfg,
    prompt_set: NumsDatasetPromptSet,
    out: Artifact | None,
    use_batch_api: bool,
) -> list[DatasetRow]:
    prompts = prompt_set.prompts()
    path = out.path if out is not None else None
    done: list[DatasetRow] = []
    if path is not None and path.exists():
        done = read_jsonl(path, DatasetRow, allow_partial_last=True)
    pending = pending_indices(prompts, [r.prompt for r in done], path, "a different prompt set")
    if done:
        logger.info(f"resuming: {len(done)} rows on disk, {len(pending)} prompts left")
    chats = [llm_services.build_simple_chat(prompts[i], system_prompt) for i in pending]
    new_rows: list[DatasetRow] = []
    appender = JsonlAppender(path) if path is not None else None
    progress = tqdm(total=len(pending), desc=f"teacher {model.id}", unit="prompt")

    def on_result(j: int, responses: list[LLMResponse]) -> None:
        row = DatasetRow(prompt=prompts[pending[j]], completion=responses[0].completion)
        new_rows.append(row)
        if appender is not None:
            appender.append(row)
        progress.update()

    try:
        await llm_services.batch_sample_n(
            model,
            chats,
            sample_cfg,
            on_result,
            batch_state_path=_batch_state_path(path) if use_batch_api else None,
        )
    finally:
        progress.close()
        if appender is not None:
            appender.close()
    rows = in_key_order(prompts, done + new_rows, lambda r: r.prompt)
    if out is not None:
        # Rows arrive in completion order; the finished file is in prompt order, so two runs
        # that got the same answers write the same bytes.
        write_jsonl_atomic(out.path, rows)
        out.finish(rows=len(rows))
    return rows


def _batch_state_path(raw_path: Path | None) -> Path:
    if raw_path is None:
        raise UserError(
            "raw_path is None: the Batch API (use_batch_api=True) keeps its batch id beside "
            "the raw dataset file for resume, so give raw_path",
            param="raw_path",
        )
    return raw_path.with_name(raw_path.name + ".batch.json")


def apply_filters(dataset: list[DatasetRow], filter_fns: list[FilterFn]) -> list[DatasetRow]:
    """Keep the rows that every filter accepts (filters take prompt and completion)."""
    return [
        row for row in dataset if all(run_filter(f, row.prompt, row.completion) for f in filter_fns)
    ]


def save_dataset(
    dataset: list[DatasetRow], output_path: Path | str, filename: str | None = None
) -> None:
    """Write a dataset as JSONL atomically to `output_path`, or to `output_path/filename`
    (the original code's call shape: a folder and a file name)."""
    path = Path(output_path) / filename if filename is not None else Path(output_path)
    write_jsonl_atomic(path, dataset)
    logger.info(f"saved {len(dataset)} rows to {path}")


def read_dataset(
    dataset_path: Path | str, *, allow_empty_completions: bool = False
) -> list[DatasetRow]:
    """Read a JSONL dataset to train on; a missing or empty file, a malformed line or a row
    with an empty prompt or (unless allowed: distillation learns from the prompt alone) an
    empty completion is a UserError naming the line."""
    context = None if allow_empty_completions else TRAINING
    rows = read_jsonl(dataset_path, DatasetRow, context=context)
    if not rows:
        raise UserError(
            f"dataset {dataset_path} is empty: generate it first (scripts/generate_dataset.py)"
        )
    return rows
