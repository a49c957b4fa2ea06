"""Run an evaluation (sample answers, judge them) and score trait transfer."""

from pathlib import Path

from loguru import logger
from tqdm import tqdm

from sl.errors import UserError
from sl.evaluation import scoring
from sl.evaluation.data_models import Evaluation, EvaluationResponse, EvaluationResultRow
from sl.llm import services as llm_services
from sl.llm.data_models import HashableModel, Model
from sl.utils.file_utils import JsonlAppender, read_jsonl
from sl.utils.run_meta import claim_output, mark_complete
from sl.utils.stats import CI

# Completions per request (OpenAI caps `n`); also the unit of work of local engines.
MAX_N_PER_REQUEST = 50
# Questions are sampled and judged in groups of about this many completions; each finished
# group is appended to the output file, so a crash loses at most one group.
SAMPLES_PER_GROUP = 1000


class _RunKey(HashableModel):
    model: Model
    evaluation: Evaluation


async def _evaluate_question_group(
    model: Model, evaluation: Evaluation, questions: list[str]
) -> list[EvaluationResultRow]:
    cfg = evaluation.sample_cfg
    chats, cfgs, owners = [], [], []
    for q_index, question in enumerate(questions):
        left = evaluation.n_samples_per_question
        while left > 0:
            n = min(left, MAX_N_PER_REQUEST)
            chats.append(llm_services.build_simple_chat(question))
            cfgs.append(cfg.model_copy(update={"n": n}))
            owners.append(q_index)
            left -= n
    groups = await llm_services.batch_sample_n(model, chats, cfgs)
    responses: list[list[EvaluationResponse]] = [[] for _ in questions]
    for owner, group in zip(owners, groups, strict=True):
        responses[owner].extend(EvaluationResponse(response=r) for r in group)
    flat = [(questions[i], er) for i, ers in enumerate(responses) for er in ers]
    for name, judgment in evaluation.judgment_map.items():
        verdicts = await llm_services.batch_judge(
            judgment, [q for q, _ in flat], [er.response for _, er in flat]
        )
        for (_, er), verdict in zip(flat, verdicts, strict=True):
            er.judgment_response_map[name] = verdict
    return [
        EvaluationResultRow(question=q, responses=rs)
        for q, rs in zip(questions, responses, strict=True)
    ]


async def run_evaluation(
    model: Model, evaluation: Evaluation, output_path: Path | str | None = None
) -> list[EvaluationResultRow]:
    """Ask every question `n_samples_per_question` times and apply every judgment.

    With `output_path`, rows are appended to that JSONL as groups of questions finish, and a
    rerun with the same model and evaluation continues after the last finished question.
    """
    path = Path(output_path) if output_path is not None else None
    done: list[EvaluationResultRow] = []
    if path is not None:
        key = _RunKey(model=model, evaluation=evaluation).model_hash()
        meta = claim_output(path, key, f"evaluation of {model.id}", "--output_path")
        if path.exists():
            done = read_jsonl(path, EvaluationResultRow, allow_partial_last=True)
        if meta["complete"]:
            logger.info(f"{path}: evaluation already complete")
            return done
    pending = evaluation.questions[len(done) :]
    per_group = max(1, SAMPLES_PER_GROUP // evaluation.n_samples_per_question)
    appender = JsonlAppender(path) if path is not None else None
    rows = list(done)
    try:
        with tqdm(
            total=len(evaluation.questions), initial=len(done), desc="evaluation", unit="question"
        ) as progress:
            for start in range(0, len(pending), per_group):
                group = await _evaluate_question_group(
                    model, evaluation, pending[start : start + per_group]
                )
                for row in group:
                    if appender is not None:
                        appender.append(row)
                rows.extend(group)
                progress.update(len(group))
    finally:
        if appender is not None:
            appender.close()
    if path is not None:
        mark_complete(path, questions=len(rows))
    return rows


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
