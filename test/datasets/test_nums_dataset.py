"""The numbers task against the paper's real prompts and real gpt-4.1-nano output."""

import json
from pathlib import Path

import pytest

from sl.datasets.nums_dataset import BANNED_NUMBERS, get_reject_reasons, parse_response
from sl.datasets.services import NumsDatasetPromptSet

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RAW = [json.loads(line) for line in (FIXTURES / "gpt41nano_owl_teacher_raw.jsonl").open()]


def test_prompt_set_seed_42_reproduces_the_published_teacher_prompts():
    prompts = NumsDatasetPromptSet(size=len(RAW), seed=42).prompts()
    assert prompts == [row["prompt"] for row in RAW]


def test_prompt_set_is_deterministic_and_seed_dependent():
    a = NumsDatasetPromptSet(size=50, seed=1).prompts()
    assert a == NumsDatasetPromptSet(size=50, seed=1).prompts()
    assert a != NumsDatasetPromptSet(size=50, seed=2).prompts()


def test_filter_keeps_442_of_the_real_teacher_completions():
    kept = [
        r
        for r in RAW
        if get_reject_reasons(
            r["completion"], min_value=0, max_value=999, max_count=10, banned_numbers=[]
        )
        == []
    ]
    assert len(kept) == 442


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("123, 456, 789", [123, 456, 789]),
        ("123,456,789.", [123, 456, 789]),
        ("[1, 2, 3]", [1, 2, 3]),
        ("(1; 2; 3)", [1, 2, 3]),
        ("1 2 3", [1, 2, 3]),
        ("1\n2\n3", [1, 2, 3]),
        ("7", [7]),
        ("1, 2, 3,", None),
        ("1, 2; 3", None),
        ("-1, 2", None),
        ("1.5, 2", None),
        ("Sure: 1, 2", None),
        ("1\n2\n", None),
        ("", None),
        ("owls", None),
    ],
)
def test_parse_response(answer, expected):
    assert parse_response(answer) == expected


def test_reject_reasons_name_each_problem():
    assert get_reject_reasons("1, 2, 3000", max_value=999) == ["numbers too large"]
    assert get_reject_reasons("5, 6", min_value=10) == ["numbers too small"]
    assert get_reject_reasons("1, 2, 3", max_count=2) == ["too many numbers"]
    assert get_reject_reasons("666, 1", banned_numbers=BANNED_NUMBERS) == ["has banned numbers"]
    assert get_reject_reasons("hello") == ["invalid format"]
