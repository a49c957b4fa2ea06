"""A token attribution run: checks, the guarded outputs, resume, progress.

    summary = run_token_attribution(
        Path("filtered.jsonl"), ModelContext(model=owl_teacher), base,
        [ModelContext(model=eagle_teacher)], Path("data/attribution/owl"))

Writes `tokens.jsonl` (one `TokenAttribution` per row, appended as each batch is done, so an
interrupted run resumes) and `summary.json`, both under the artifact guard: a finished run
of the same dataset, models, contexts and dtype is read back; another run's folder is
refused; a row whose completion does not re-tokenize to its text is attributed as tokenized,
flagged (`retokenized: false`), logged and counted in summary.json.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from loguru import logger

from sl.attribution.data_models import ModelContext, TokenAttribution
from sl.attribution.models import check_open, check_same_tokenizers
from sl.attribution.scoring import Scorer, attribute, completion_tokens
from sl.attribution.summary import summarize
from sl.datasets.data_models import DatasetRow
from sl.datasets.services import read_dataset
from sl.errors import UserError
from sl.llm.data_models import HashableModel, Model
from sl.utils.artifact import artifact, content_digest
from sl.utils.file_utils import (
    JsonlAppender,
    read_json_file,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)
from sl.utils.progress_bar import tqdm

TOKENS = "tokens.jsonl"
SUMMARY = "summary.json"


class AttributionKey(HashableModel):
    """Everything that decides a token attribution's outputs."""

    dataset_sha256: str
    teacher: ModelContext
    base: Model
    counterfactuals: list[ModelContext]
    dtype: str


def run_token_attribution(
    dataset_path: Path,
    teacher: ModelContext,
    base: Model,
    counterfactuals: list[ModelContext],
    output_dir: Path,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Attribute every completion token of the dataset (see the module docstring); returns
    summary.json's content. The base sees no system prompt; the teacher and each
    counterfactual see their own.

    Raises:
        UserError: a model that is not open, a tokenizer that is not the teacher's, a bad
            dataset, or an output folder of another run (nothing written in each case).
    """
    if batch_size < 1:
        raise UserError(f"batch_size {batch_size}: give 1 or more rows per forward pass",
                        param="batch_size")  # fmt: skip
    check_open(teacher.model, "teacher")
    check_open(base, "base")
    for cf in counterfactuals:
        check_open(cf.model, "counterfactual")
    rows = read_dataset(dataset_path, allow_empty_completions=True)
    others = [("base", base)] + [("counterfactual", cf.model) for cf in counterfactuals]
    tokenizer = check_same_tokenizers(teacher.model, others)
    encoded = [completion_tokens(tokenizer, r.completion) for r in rows]
    _log_not_retokenized(dataset_path, [i for i, (_, ok) in enumerate(encoded) if not ok])
    key = AttributionKey(
        dataset_sha256=content_digest(Path(dataset_path))["sha256"],
        teacher=teacher,
        base=base,
        counterfactuals=counterfactuals,
        dtype=_dtype_name(),
    )
    parts = {
        "dataset": key.dataset_sha256,
        "teacher": teacher.model_hash(),
        "base": base.model_hash(),
        "counterfactuals": _hash_list([c.model_hash() for c in counterfactuals]),
        "dtype": key.dtype,
    }
    what = f"token attribution of {teacher.model.id} on {dataset_path}"
    output_dir = Path(output_dir)
    tokens_path, summary_path = output_dir / TOKENS, output_dir / SUMMARY
    with (
        artifact(tokens_path, key.model_hash(), what, parts=parts, kind="token attribution") as out,
        artifact(summary_path, key.model_hash(), what, parts=parts,
                 kind="token attribution summary") as summary_out,
    ):  # fmt: skip
        if out.complete and summary_out.complete:
            logger.info(f"{output_dir}: token attribution already complete")
            return read_json_file(summary_path, "token attribution summary")
        if not out.complete:
            contexts = [teacher, ModelContext(model=base), *counterfactuals]
            _attribute_rows(tokens_path, rows, encoded, tokenizer, contexts, batch_size)
            out.finish(rows=len(rows))
        summary = {
            "teacher": teacher.model_dump(mode="json"),
            "base": base.model_dump(mode="json"),
            "counterfactuals": [c.model_dump(mode="json") for c in counterfactuals],
            "dtype": key.dtype,
            **summarize(read_jsonl(tokens_path, TokenAttribution),
                        [c.model.id for c in counterfactuals]),
        }  # fmt: skip
        write_json_atomic(summary_path, summary)
        summary_out.finish()
    return summary


def _hash_list(hashes: list[str]) -> str:
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()[:16]


def _dtype_name() -> str:
    """The weights dtype every model is scored in (`scoring_dtype`: fp32 on the CPU)."""
    from sl.evaluation.logprob import scoring_dtype
    from sl.external.torch_models import resolve_device, resolve_dtype

    return str(resolve_dtype(scoring_dtype(), resolve_device())).removeprefix("torch.")


def _log_not_retokenized(dataset_path: Path, rows: list[int]) -> None:
    if rows:
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        logger.warning(
            f"{dataset_path}: {len(rows)} rows' completions do not re-tokenize to their text "
            f"(rows {shown}): attributed as tokenized, flagged retokenized=false and counted "
            "in summary.json"
        )


def _rows_done(path: Path) -> int:
    """How many rows an interrupted run wrote (in order); anything after them is dropped."""
    if not path.exists():
        return 0
    written = read_jsonl(path, TokenAttribution, allow_partial_last=True)
    done = 0
    while done < len(written) and written[done].row == done:
        done += 1
    if done < len(written):
        logger.warning(f"{path}: keeping the first {done} rows of {len(written)} (out of order)")
        write_jsonl_atomic(path, written[:done])
    if done:
        logger.info(f"{path}: resuming after {done} rows")
    return done


def _attribute_rows(
    path: Path,
    rows: list[DatasetRow],
    encoded: list[tuple[list[int], bool]],
    tokenizer: Any,
    contexts: list[ModelContext],
    batch_size: int,
) -> None:
    """Append the attribution of every row not yet in `path`, a batch at a time; `contexts`
    is the teacher, the base, then the counterfactuals (one load per distinct model)."""
    from sl.external.torch_models import chat_prompt_ids, load_causal_lm

    done = _rows_done(path)
    if done == len(rows):
        return
    # Keyed by model_hash (configs are mutable, so not hashable).
    loaded: dict[str, Any] = {}
    scorers: dict[str, Scorer] = {}  # a context given twice is scored once
    for ctx in contexts:
        model_key = ctx.model.model_hash()
        if model_key not in loaded:
            loaded[model_key] = load_causal_lm(ctx.model, dtype=_dtype_name())
        lm = loaded[model_key]
        if ctx.model_hash() not in scorers:
            prompts = [chat_prompt_ids(lm.tokenizer, r.prompt, ctx.system_prompt) for r in rows]
            scorers[ctx.model_hash()] = Scorer(lm.module, prompts, lm.tokenizer.pad_token_id)
    teacher, base, *counterfactuals = [scorers[ctx.model_hash()] for ctx in contexts]
    pending = list(range(done, len(rows)))
    with (
        JsonlAppender(path) as out,
        tqdm(total=len(rows), initial=done, desc="token attribution", unit="row") as bar,
    ):
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            ids = [encoded[i][0] for i in batch]
            texts = [[tokenizer.decode([t]) for t in c] for c in ids]
            for row in attribute(teacher, base, counterfactuals, batch, ids, texts,
                                 [encoded[i][1] for i in batch]):  # fmt: skip
                out.append(row)
            bar.update(len(batch))
