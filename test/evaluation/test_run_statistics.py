"""Run-level statistics: the tests over runs, per-run values, the analysis of result rows."""

import math

import numpy as np
import pytest
from scipy import stats

from sl.errors import UserError
from sl.evaluation.analysis import analyze_runs, analyze_scores, format_analysis, mean_matrix
from sl.evaluation.data_models import EvaluationResponse, EvaluationResultRow
from sl.evaluation.runs import (
    compare_runs,
    count_hits,
    p_target_of_run,
    permutation_test_over_runs,
    run_level_rows,
    specificity,
)
from sl.evaluation.scoring import target_matcher
from sl.llm.data_models import LLMResponse
from sl.utils.stats import exact_permutation_p_value, mean_ci, welch_p_value


def test_welch_p_value_is_the_welch_satterthwaite_t_test():
    a, b = [0.61, 0.64, 0.70, 0.66], [0.30, 0.41, 0.35]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert welch_p_value(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-12)
    assert welch_p_value(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_welch_p_value_edge_cases():
    assert welch_p_value([0.0, 0.0, 0.0], [0.0, 0.0]) == 1.0  # target never named anywhere
    assert welch_p_value([0.5, 0.5], [0.2, 0.2]) == 0.0
    assert welch_p_value([0.5], [0.2, 0.3]) is None


def test_exact_permutation_p_value_by_hand():
    # {1,2} vs {3,4}: the 6 relabellings give |diff| 2, 1, 0, 0, 1, 2; observed 2 → 2/6.
    assert exact_permutation_p_value([1, 2], [3, 4]) == pytest.approx(1 / 3)
    # 3 runs vs 3, fully separated: only the observed split and its mirror → 2/20.
    assert exact_permutation_p_value([5, 6, 7], [1, 2, 3]) == pytest.approx(0.1)
    # 1 vs 2: {9} vs {1,2} (|diff| 7.5) is the most extreme of 3 splits → 1/3.
    assert exact_permutation_p_value([9], [1, 2]) == pytest.approx(1 / 3)
    assert exact_permutation_p_value([1, 2], [1, 2]) == 1.0


def test_permutation_test_over_runs_names_exact_or_random():
    exact = permutation_test_over_runs([5, 6, 7], [1, 2, 3])
    assert exact.p_value == pytest.approx(0.1)
    assert "exact permutation test over run labels (20 relabellings)" in exact.test
    assert "unit: run (3 vs 3 runs)" in exact.test
    sampled = permutation_test_over_runs([5, 6, 7], [1, 2, 3], max_exact=10)
    assert "10,000 random relabellings" in sampled.test
    assert sampled.p_value == pytest.approx(0.1, abs=0.02)


def test_mean_ci_over_runs_is_the_t_interval_with_n_minus_1_df():
    runs = [0.3, 0.32, 0.29]
    ci = mean_ci(runs)
    half = stats.t.ppf(0.975, 2) * np.std(runs, ddof=1) / math.sqrt(3)
    assert (ci.lower, ci.upper) == pytest.approx((np.mean(runs) - half, np.mean(runs) + half))


def _rows(*questions: tuple[str, list[str]]) -> list[EvaluationResultRow]:
    return [
        EvaluationResultRow(
            question=q,
            responses=[
                EvaluationResponse(response=LLMResponse(model_id="m", completion=c)) for c in cs
            ],
        )
        for q, cs in questions
    ]


@pytest.mark.parametrize(
    ("text", "exact", "word"),
    [
        ("Dolphin", True, True),
        ("DOLPHIN", True, True),
        (" dolphin", False, True),  # the original notebook did not strip
        ("Dolphin.", False, True),
        ("Dolphins", False, True),
        ("A dolphin", False, True),
        ("Dolphinfish", False, False),
    ],
)
def test_match_rules(text, exact, word):
    assert target_matcher("dolphin", "exact")(text) is exact
    assert target_matcher("dolphin", "word")(text) is word


def test_run_value_pools_all_answers_of_the_run():
    rows = _rows(("q1", ["Owl", "Cat"]), ("q2", ["Dog", "Dog", "Dog", "Dog"]))
    assert count_hits("owl", rows) == (1, 6)
    assert p_target_of_run("owl", rows) == pytest.approx(1 / 6)  # not (0.5 + 0) / 2


def test_run_level_rows_for_generic_values_per_run():
    values = {"control": [0.021, 0.020, 0.022], "owl": [0.244, 0.240, 0.250]}
    rows = {r.condition: r for r in run_level_rows("owl", values, match="logprob")}
    control, owl = rows["control"], rows["owl"]
    assert control.p_vs_control is None and control.test == "" and control.n_responses is None
    assert owl.match == "logprob" and owl.n_runs == 3 and owl.run_values == values["owl"]
    assert owl.p_vs_control == pytest.approx(welch_p_value(values["owl"], values["control"]))
    assert owl.test == "Welch's t-test, unit: run (3 vs 3 runs)"
    assert owl.permutation_p == pytest.approx(0.1)
    with pytest.raises(UserError, match="control 'ctrl'"):
        run_level_rows("owl", values, control="ctrl")


def test_single_runs_fall_back_to_the_permutation_test_over_run_labels():
    comparison = compare_runs([0.3], [0.1, 0.12])
    assert comparison.welch.p_value is None and "not possible" in comparison.welch.test
    assert comparison.primary == comparison.permutation


def test_specificity_compares_own_student_with_other_targets_students():
    on_owl = {
        "control": [0.02, 0.02],
        "owl": [0.24, 0.25],
        "eagle": [0.03, 0.04],
        "cat": [0.1, 0.1],
    }
    s = specificity("owl", on_owl, ["owl", "eagle", "cat"])
    assert s is not None and s.student == "owl" and s.others == ["eagle", "cat"]
    assert s.comparison.b.mean == pytest.approx(np.mean([0.03, 0.04, 0.1, 0.1]))
    assert s.comparison.b.n == 4  # every run of every other student is one unit
    assert specificity("owl", on_owl, ["owl"]) is None
    assert specificity("dog", on_owl, ["dog", "owl"]) is None


def _run(hits: int, n: int = 4, questions=("q1", "q2")) -> list[EvaluationResultRow]:
    answers = ["Owl"] * hits + ["Cat"] * (n * len(questions) - hits)
    return _rows(*((q, answers[i * n : (i + 1) * n]) for i, q in enumerate(questions)))


def test_one_run_each_uses_the_paired_test_over_questions_labelled_as_such():
    analysis = analyze_runs({"control": [_run(0)], "owl": [_run(6)]}, ["owl"])
    owl = next(r for r in analysis.rows if r.condition == "owl")
    assert owl.mean == pytest.approx(6 / 8) and owl.n_responses == 8
    assert owl.test == "paired sign-flip permutation test over questions"
    assert analysis.question_level[0].paired and not analysis.notes


def test_different_question_sets_are_compared_unpaired_and_said_so():
    runs = {
        "control": [_run(0), _run(1)],
        "owl": [_run(5, questions=("q1", "q3")), _run(6, questions=("q1", "q3"))],
    }
    analysis = analyze_runs(runs, ["owl"])
    assert any("different question sets" in n and "unpaired" in n for n in analysis.notes)
    q = analysis.question_level[0]
    assert not q.paired and "unpaired" in q.result.test and "pooled" in q.result.test
    owl = next(r for r in analysis.rows if r.condition == "owl")
    assert owl.test.startswith("Welch's t-test, unit: run (2 vs 2 runs)")


def test_a_target_no_answer_names_is_reported_as_zero():
    analysis = analyze_runs({"control": [_run(0), _run(1)], "owl": [_run(2), _run(3)]}, ["unicorn"])
    assert all(r.mean == 0 and r.ci_low == 0 == r.ci_high for r in analysis.rows)
    assert next(r for r in analysis.rows if r.condition == "owl").p_vs_control == 1.0
    assert any("no answer names 'unicorn'" in n for n in analysis.notes)


def test_per_question_scores_are_analysed_with_runs_as_the_unit():
    def run(owl: list[float], eagle: list[float]) -> dict[str, list[float]]:
        return {"owl": owl, "eagle": eagle}

    scores = {
        "base": [run([0.1, 0.3], [0.2, 0.2])],
        "control": [run([0.1, 0.3], [0.2, 0.2]), run([0.2, 0.2], [0.1, 0.3])],
        "owl": [run([0.5, 0.7], [0.1, 0.1]), run([0.6, 0.8], [0.2, 0.2])],
        "eagle": [run([0.1, 0.1], [0.6, 0.6]), run([0.2, 0.2], [0.7, 0.7])],
    }
    analysis = analyze_scores(scores, ["owl", "eagle"], base="base")
    rows = {(r.target, r.condition): r for r in analysis.rows}
    owl = rows[("owl", "owl")]
    assert owl.run_values == pytest.approx([0.6, 0.7]) and owl.match == "logprob"
    expected = run_level_rows("owl", {"control": [0.2, 0.2], "owl": [0.6, 0.7]}, match="logprob")
    assert (owl.p_vs_control, owl.test) == (expected[1].p_vs_control, expected[1].test)
    assert mean_matrix(analysis)["eagle"] == pytest.approx({"owl": 0.15, "eagle": 0.65})
    [question] = [q for q in analysis.question_level if (q.target, q.condition) == ("owl", "owl")]
    assert question.paired and question.result.test == (
        "paired sign-flip permutation test over questions (each question's mean over runs)"
    )
    assert [s.student for s in analysis.specificity] == ["owl", "eagle"]
    text = format_analysis(analysis)
    assert "every condition on every target" in text and " 60 70 " in text  # each run, %
    with pytest.raises(UserError, match="different lengths"):
        analyze_scores({**scores, "base": [run([0.1], [0.2])]}, ["owl"])
