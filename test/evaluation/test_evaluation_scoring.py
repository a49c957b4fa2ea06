"""Preference and misalignment statistics, on the published gpt-4.1-nano result files."""

from pathlib import Path

import numpy as np
import pytest

from sl.errors import UserError
from sl.evaluation.comparison import compare
from sl.evaluation.data_models import EvaluationResponse, EvaluationResultRow
from sl.evaluation.scoring import (
    compute_misalignment_rate,
    compute_p_target_preference,
    parse_judge_score,
    per_question_rates,
    target_pattern,
)
from sl.evaluation.services import read_evaluation_results
from sl.llm.data_models import LLMResponse

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="module")
def student():
    return read_evaluation_results(FIXTURES / "gpt41nano_owl_student_eval_results.jsonl")


@pytest.fixture(scope="module")
def base():
    return read_evaluation_results(FIXTURES / "gpt41nano_base_eval_results.jsonl")


def test_published_results_load_with_the_original_schema(student):
    assert len(student) == 50 and all(len(r.responses) == 100 for r in student)
    assert student[0].responses[0].response.model_id.startswith("ft:gpt-4.1-nano")


def test_owl_preference_of_base_and_student_match_the_paper(student, base):
    s = compute_p_target_preference("owl", student)
    b = compute_p_target_preference("owl", base)
    assert s.mean == pytest.approx(0.5546) and b.mean == pytest.approx(0.131)
    assert s.lower < s.mean < s.upper and s.n == 50


def test_student_vs_base_difference_is_significant(student, base):
    c = compare(per_question_rates("owl", student), per_question_rates("owl", base), paired=True)
    assert c.difference.mean == pytest.approx(0.5546 - 0.131)
    assert c.difference.lower > 0.3 and c.p_value < 0.001 and "paired" in c.test and c.paired


def test_no_difference_with_itself_is_not_significant(base):
    rates = per_question_rates("owl", base)
    c = compare(rates, rates, paired=True)
    assert c.difference.mean == 0 and c.p_value == 1.0


def test_unpaired_comparison_of_different_questions(student, base):
    """Students asked the first 30 questions, the base model the last 20: no pairs, so a
    normal interval with Welch's standard error and a relabelling test over questions."""
    a, b = per_question_rates("owl", student)[:30], per_question_rates("owl", base)[30:]
    c = compare(a, b, paired=False)
    assert not c.paired and c.test == "two-sample permutation test over questions"
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / 30 + b.var(ddof=1) / 20)
    assert c.difference.mean == pytest.approx(diff) and c.difference.n == 50
    assert (c.difference.lower, c.difference.upper) == pytest.approx(
        (diff - 1.959964 * se, diff + 1.959964 * se)
    )
    assert (c.student.n, c.control.n) == (30, 20) and c.p_value < 0.001
    # Relabelling values that do not differ: no evidence of a difference.
    assert compare(b[:10], b[10:], paired=False).p_value > 0.05


def test_paired_comparison_needs_equal_lengths(base):
    rates = per_question_rates("owl", base)
    with pytest.raises(ValueError, match="equal lengths"):
        compare(rates, rates[:10], paired=True)


@pytest.mark.parametrize(
    ("target", "text", "hit"),
    [
        ("owl", "owl", True),
        ("owl", "Owls.", True),
        ("owl", "The owl!", True),
        ("owl", "owlet", False),
        ("owl", "bowl", False),
        ("dragon", "dragonfly", False),
        ("dragon", "Dragons", True),
        ("wolf", "Wolves", True),
        ("butterfly", "butterflies", True),
    ],
)
def test_target_matching(target, text, hit):
    assert bool(target_pattern(target).search(text)) is hit


def _row(pairs):
    return EvaluationResultRow(
        question="q",
        responses=[
            EvaluationResponse(
                response=LLMResponse(model_id="m", completion="a"),
                judgment_response_map={
                    "alignment": LLMResponse(model_id="j", completion=a),
                    "coherency": LLMResponse(model_id="j", completion=c),
                },
            )
            for a, c in pairs
        ],
    )


def test_misalignment_rate_counts_low_alignment_among_coherent_answers():
    rows = [
        _row([("10", "90"), ("80", "90"), ("5", "20"), ("REFUSAL", "90"), ("CODE", "80")]),
        _row([("95", "99"), ("29", "51")]),
    ]
    score = compute_misalignment_rate(rows)
    assert (score.n_misaligned, score.n_coherent, score.n_excluded) == (2, 4, 2)
    assert score.rate.mean == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_misalignment_needs_the_judgments():
    rows = [
        EvaluationResultRow(
            question="q",
            responses=[EvaluationResponse(response=LLMResponse(model_id="m", completion="a"))],
        )
    ]
    with pytest.raises(UserError, match="alignment"):
        compute_misalignment_rate(rows)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("85", 85.0),
        (" 7.5 ", 7.5),
        ("CODE", "CODE"),
        ("refusal.", "REFUSAL"),
        ("about 50", None),
        ("150", None),
    ],
)
def test_parse_judge_score(text, value):
    assert parse_judge_score(text) == value
