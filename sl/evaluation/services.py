"""Run an evaluation (sample answers, judge them) and score trait transfer."""

import asyncio
from collections import Counter
from pathlib import Path

from loguru import logger
from tqdm import tqdm

from sl.errors import UserError
from sl.evaluation import scoring
from sl.evaluation.data_models import Evaluation, EvaluationResponse, EvaluationResultRow
from sl.llm import services as llm_services
from sl.llm.data_models import HashableModel, LLMResponse, Model
from sl.utils.file_utils import JsonlAppender, read_jsonl, write_jsonl_atomic
from sl.utils.output_lock import output_lock
from sl.utils.run_meta import claim_output, mark_complete, pending_indices
from sl.utils.stats import CI

# Completions per request (OpenAI caps `n`); also the unit of work of local engines.
MAX_N_PER_REQUEST = 50


class _RunKey(HashableModel):
    model: Model
    evaluation: Evaluation


class _QuestionRunner:
    """Samples every pending question at once and judges each question as soon as its own
    samples are in; `on_row` gets each question's finished row."""

    def __init__(self, model: Model, evaluation: Evaluation, on_row, overlap: bool):
        self.model = model
        self.evaluation = evaluation
        self.on_row = on_row
        self.overlap = overlap  # judge while other questions are still being sampled

    async def run(self, questions: list[str]) -> None:
        cfg = self.evaluation.sample_cfg
        chats, cfgs, owners = [], [], []
        for q_index, question in enumerate(questions):
            left = self.evaluation.n_samples_per_question
            while left > 0:
                n = min(left, MAX_N_PER_REQUEST)
                chats.append(llm_services.build_simple_chat(question))
                cfgs.append(cfg.model_copy(update={"n": n}))
                owners.append(q_index)
                left -= n
        requests_left = Counter(owners)
        responses: list[list[LLMResponse]] = [[] for _ in questions]
        judging: list[asyncio.Task] = []
        sampled: list[int] = []
        loop = asyncio.get_running_loop()

        def collect(i: int, group: list[LLMResponse]) -> None:  # on the event loop
            q = owners[i]
            responses[q].extend(group)
            requests_left[q] -= 1
            if requests_left[q] == 0:
                if self.overlap:
                    judging.append(loop.create_task(self._finish(questions[q], responses[q])))
                else:
                    sampled.append(q)

        def on_result(i: int, group: list[LLMResponse]) -> None:  # any thread
            loop.call_soon_threadsafe(collect, i, group)

        try:
            try:
                await llm_services.batch_sample_n(self.model, chats, cfgs, on_result)
            except Exception:
                # Some requests failed for good: still save the questions already sampled.
                await asyncio.sleep(0)
                await asyncio.gather(*judging, return_exceptions=True)
                raise
            await asyncio.sleep(0)  # run the callbacks scheduled by the last results
            for q in sampled:
                judging.append(loop.create_task(self._finish(questions[q], responses[q])))
            errors = [e for e in await asyncio.gather(*judging, return_exceptions=True) if e]
            if errors:
                raise errors[0]
        except BaseException:  # interrupted: stop the judging still in flight
            for task in judging:
                task.cancel()
            await asyncio.gather(*judging, return_exceptions=True)
            raise

    async def _finish(self, question: str, responses: list[LLMResponse]) -> None:
        rows = [EvaluationResponse(response=r) for r in responses]
        judgments = self.evaluation.judgment_map
        # All judgments of a question at once: its requests queue together, so questions
        # finish (and are written) one after another rather than all at the end.
        all_verdicts = await asyncio.gather(
            *(
                llm_services.batch_judge(judgment, [question] * len(responses), responses)
                for judgment in judgments.values()
            )
        )
        for name, verdicts in zip(judgments, all_verdicts, strict=True):
            for row, verdict in zip(rows, verdicts, strict=True):
                row.judgment_response_map[name] = verdict
        self.on_row(EvaluationResultRow(question=question, responses=rows))


async def run_evaluation(
    model: Model, evaluation: Evaluation, output_path: Path | str | None = None
) -> list[EvaluationResultRow]:
    """Ask every question `n_samples_per_question` times and apply every judgment.

    With `output_path` (locked while this runs), each question's row is appended as soon as
    its samples and judgments are done, so a crash loses at most the questions in flight; a
    rerun with the same model and evaluation asks only the questions missing there. The
    finished file lists the questions in the evaluation's order.
    """
    judges = [j.judge_model for j in evaluation.judgment_map.values()]
    llm_services.check_ready([model, *judges])
    path = Path(output_path) if output_path is not None else None
    if path is None:
        return await _run(model, evaluation, None)
    with output_lock(path):
        return await _run(model, evaluation, path)


async def _run(
    model: Model, evaluation: Evaluation, path: Path | None
) -> list[EvaluationResultRow]:
    done: list[EvaluationResultRow] = []
    if path is not None:
        key = _RunKey(model=model, evaluation=evaluation).model_hash()
        meta = claim_output(path, key, f"evaluation of {model.id}")
        if path.exists():
            done = read_jsonl(path, EvaluationResultRow, allow_partial_last=True)
        if meta["complete"]:
            logger.info(f"{path}: evaluation already complete")
            return done
    questions = evaluation.questions
    pending = pending_indices(questions, [r.question for r in done], path, "other questions")
    if done:
        logger.info(f"resuming: {len(done)} questions on disk, {len(pending)} left")
    rows = list(done)
    appender = JsonlAppender(path) if path is not None else None
    progress = tqdm(total=len(questions), initial=len(done), desc="evaluation", unit="question")

    def on_row(row: EvaluationResultRow) -> None:
        if appender is not None:
            appender.append(row)
        rows.append(row)
        progress.update()

    # Two local engines must not run at once in one process (one model in memory at a time).
    local_judge = any(j.judge_model.type == "open_source" for j in evaluation.judgment_map.values())
    overlap = not (model.type == "open_source" and local_judge)
    try:
        if pending:
            runner = _QuestionRunner(model, evaluation, on_row, overlap)
            await runner.run([questions[i] for i in pending])
    finally:
        progress.close()
        if appender is not None:
            appender.close()
    rows = _in_question_order(questions, rows)
    if path is not None:
        write_jsonl_atomic(path, rows)
        mark_complete(path, questions=len(rows))
    return rows


def _in_question_order(
    questions: list[str], rows: list[EvaluationResultRow]
) -> list[EvaluationResultRow]:
    by_question: dict[str, list[EvaluationResultRow]] = {}
    for row in rows:
        by_question.setdefault(row.question, []).append(row)
    return [by_question[q].pop(0) for q in questions]


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
