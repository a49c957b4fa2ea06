"""Run an evaluation (sample answers, judge them) and score trait transfer."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from sl.errors import UserError
from sl.evaluation import scoring
from sl.evaluation.data_models import Evaluation, EvaluationResponse, EvaluationResultRow
from sl.evaluation.judge_template import check_judge_templates
from sl.evaluation.parts import JudgmentRecord, PartStore, SampleRecord, parts_path
from sl.llm import services as llm_services
from sl.llm.data_models import HashableModel, Judgment, LLMResponse, Model
from sl.llm.driver import OnResult
from sl.llm.engines import engine_of
from sl.utils.artifact import artifact
from sl.utils.file_utils import read_jsonl, write_jsonl_atomic
from sl.utils.fingerprint import json_hash
from sl.utils.progress_bar import tqdm
from sl.utils.run_meta import in_key_order, pending_indices
from sl.utils.stats import CI

# Completions per request (OpenAI caps `n`); also the unit of work of local engines.
MAX_N_PER_REQUEST = 50


class _RunKey(HashableModel):
    model: Model
    evaluation: Evaluation


def _config_parts(model: Model, evaluation: Evaluation) -> dict[str, str]:
    """A hash per part of the run, so that a refusal names the part that differs."""
    fields = evaluation.model_dump(mode="json")
    named = {
        "questions": "questions",
        "n_samples": "n_samples_per_question",
        "sample_cfg": "sample_cfg",
        "judgments": "judgment_map",
    }
    parts = {"model": model.model_hash()}
    for part, field in named.items():
        parts[part] = json_hash(fields[field])
    return parts


@dataclass(frozen=True)
class _Request:
    """One sampling request: `n` answers to question `question`, its samples `first`..."""

    question: int  # index into the evaluation's questions
    index: int  # among the question's requests
    first: int
    n: int


def _plan(evaluation: Evaluation, question_indices: list[int]) -> list[_Request]:
    total = evaluation.n_samples_per_question
    firsts = range(0, total, MAX_N_PER_REQUEST)
    return [
        _Request(q, r, first, min(MAX_N_PER_REQUEST, total - first))
        for q in question_indices
        for r, first in enumerate(firsts)
    ]


class _Runner:
    """Sends the requests whose answers or judgments are not in `store` yet; each answer
    and judgment is saved there the moment it arrives, whatever the others are doing.

    With `overlap`, a request's answers are judged as soon as they arrive, while other
    requests are still being sampled; without, judging starts when all sampling is done
    (two local engines must not run at once in one process).
    """

    def __init__(
        self, model: Model, evaluation: Evaluation, store: PartStore, overlap: bool, progress
    ):
        self.model = model
        self.evaluation = evaluation
        self.store = store
        self.overlap = overlap
        self.progress = progress
        self.judging: list[asyncio.Task] = []

    async def run(self, requests: list[_Request]) -> None:
        to_sample = [r for r in requests if (r.question, r.index) not in self.store.samples]
        try:
            if self.overlap:
                self._start_judging(requests)
            try:
                await self._sample(to_sample)
            except Exception:
                # Some requests failed for good: let the judging under way save its verdicts.
                await asyncio.gather(*self.judging, return_exceptions=True)
                raise
            if not self.overlap:
                self._start_judging(requests)
            errors = [e for e in await asyncio.gather(*self.judging, return_exceptions=True) if e]
            if errors:
                raise errors[0]
        except BaseException:  # interrupted: stop the judging still in flight
            for task in self.judging:
                task.cancel()
            await asyncio.gather(*self.judging, return_exceptions=True)
            raise

    async def _sample(self, requests: list[_Request]) -> None:
        if not requests:
            return
        questions = self.evaluation.questions

        def sampled(i: int, responses: list[LLMResponse]) -> None:  # on the event loop
            req = requests[i]
            q = req.question
            self.store.add(
                SampleRecord(
                    question_index=q,
                    question=questions[q],
                    request=req.index,
                    first_sample=req.first,
                    responses=responses,
                )
            )
            self.progress.update()
            if self.overlap:
                self._start_judging([req])

        chats = [llm_services.build_simple_chat(questions[r.question]) for r in requests]
        cfgs = [self.evaluation.sample_cfg.model_copy(update={"n": r.n}) for r in requests]
        try:
            await llm_services.batch_sample_n(
                self.model,
                chats,
                cfgs,
                _on_loop(sampled),
            )
        finally:
            await asyncio.sleep(0)  # run the callbacks scheduled by the last results

    def _start_judging(self, requests: list[_Request]) -> None:
        """Judge the saved answers of `requests` that lack a saved judgment."""
        for name, judgment in self.evaluation.judgment_map.items():
            todo = [
                (req.question, s, response)
                for req in requests
                for s, response in enumerate(
                    self.store.samples.get((req.question, req.index), []), start=req.first
                )
                if (req.question, s, name) not in self.store.judgments
            ]
            if todo:
                task = asyncio.get_running_loop().create_task(self._judge(name, judgment, todo))
                self.judging.append(task)

    async def _judge(
        self, name: str, judgment: Judgment, todo: list[tuple[int, int, LLMResponse]]
    ) -> None:
        questions = self.evaluation.questions

        def judged(i: int, verdicts: list[LLMResponse]) -> None:  # on the event loop
            q, s, _ = todo[i]
            self.store.add(
                JudgmentRecord(
                    question_index=q,
                    question=questions[q],
                    sample=s,
                    judgment=name,
                    response=verdicts[0],
                )
            )
            self.progress.update()

        try:
            await llm_services.batch_judge(
                judgment,
                [questions[q] for q, _, _ in todo],
                [response for _, _, response in todo],
                _on_loop(judged),
            )
        finally:
            await asyncio.sleep(0)


def _on_loop(callback: OnResult) -> OnResult:
    """`callback`, run on this event loop whatever thread the driver calls it from."""
    loop = asyncio.get_running_loop()

    def on_result(i: int, responses: list[LLMResponse]) -> None:
        loop.call_soon_threadsafe(callback, i, responses)

    return on_result


def _assemble(
    evaluation: Evaluation, store: PartStore, requests: list[_Request]
) -> EvaluationResultRow:
    """The row of one question from its saved parts (`requests`: all of its requests)."""
    responses = []
    for req in requests:
        for s, answer in enumerate(store.samples[(req.question, req.index)], start=req.first):
            verdicts = {
                name: store.judgments[(req.question, s, name)] for name in evaluation.judgment_map
            }
            responses.append(EvaluationResponse(response=answer, judgment_response_map=verdicts))
    return EvaluationResultRow(
        question=evaluation.questions[requests[0].question], responses=responses
    )


async def run_evaluation(
    model: Model, evaluation: Evaluation, output_path: Path | str | None = None
) -> list[EvaluationResultRow]:
    """Ask every question `n_samples_per_question` times and apply every judgment.

    With `output_path` (guarded by `sl.utils.artifact` while this runs), every answer and
    every judgment is saved the moment it arrives (in `<output>.parts.jsonl`), so a crash
    loses only the requests in flight and a rerun with the same model and evaluation sends
    only the others. The results file is written when everything is in, with the questions
    in the evaluation's order (the same bytes for the same answers).

    Raises:
        UserError: a judge template with a placeholder other than {prompt} and {completion}
            (before any request), or an output of another run (naming the parts that differ).
    """
    check_judge_templates(evaluation.judgment_map)
    judges = [j.judge_model for j in evaluation.judgment_map.values()]
    llm_services.check_ready([model, *judges])
    key = _RunKey(model=model, evaluation=evaluation).model_hash()
    if output_path is None:
        return await _run(model, evaluation, PartStore(None, key), [])
    path = Path(output_path)
    parts = _config_parts(model, evaluation)
    with artifact(path, key, f"evaluation of {model.id}", parts=parts) as out:
        if out.complete:
            logger.info(f"{path}: evaluation already complete")
            return read_jsonl(path, EvaluationResultRow)
        done = (
            read_jsonl(path, EvaluationResultRow, allow_partial_last=True) if path.exists() else []
        )
        store = PartStore(parts_path(path), key)
        try:
            rows = await _run(model, evaluation, store, done, path)
        finally:
            store.close()
        write_jsonl_atomic(path, rows)
        out.finish(questions=len(rows))
        store.remove()
    return rows


async def _run(
    model: Model,
    evaluation: Evaluation,
    store: PartStore,
    done: list[EvaluationResultRow],
    path: Path | None = None,
) -> list[EvaluationResultRow]:
    """The rows of all questions: `done` (rows already in the results file) and the others,
    assembled from `store` after sending what it lacks."""
    questions = evaluation.questions
    pending = pending_indices(questions, [r.question for r in done], path, "other questions")
    requests = _plan(evaluation, pending)
    n_judgments = len(evaluation.judgment_map)
    total = len(requests) + len(pending) * evaluation.n_samples_per_question * n_judgments
    pending_set = set(pending)
    saved = sum(k[0] in pending_set for k in store.samples) + sum(
        k[0] in pending_set for k in store.judgments
    )
    if done or saved:
        logger.info(
            f"resuming: {len(done)} questions finished, {saved} of {total} requests of the "
            f"{len(pending)} others saved"
        )
    # Two local engines must not run at once in one process (one model in memory at a time).
    local_judge = any(
        engine_of(j.judge_model).runs_locally for j in evaluation.judgment_map.values()
    )
    overlap = not (engine_of(model).runs_locally and local_judge)
    with tqdm(total=total, initial=saved, desc="evaluation", unit="request") as progress:
        await _Runner(model, evaluation, store, overlap, progress).run(requests)
    by_question: dict[int, list[_Request]] = {}
    for req in requests:
        by_question.setdefault(req.question, []).append(req)
    rows = done + [_assemble(evaluation, store, reqs) for reqs in by_question.values()]
    return in_key_order(questions, rows, key=lambda row: row.question)


def read_evaluation_results(path: Path | str) -> list[EvaluationResultRow]:
    """Read evaluation results (this project's or the original code's JSONL)."""
    rows = read_jsonl(path, EvaluationResultRow)
    if not rows:
        raise UserError(f"evaluation results {path} are empty: run the evaluation first")
    return rows


def compute_p_target_preference(
    target_preference: str,
    evaluation_result_rows: list[EvaluationResultRow],
    confidence: float = 0.95,
) -> CI:
    """The original code's name and place for `scoring.compute_p_target_preference`.

    Differences from the original: a response counts when it names the target as a whole
    word ("owls" yes, "owlet" no; the original matched any substring), and the interval is a
    t-interval over questions. The CI also answers to `lower_bound`, `upper_bound`, `count`.
    """
    return scoring.compute_p_target_preference(
        target_preference, evaluation_result_rows, confidence
    )
