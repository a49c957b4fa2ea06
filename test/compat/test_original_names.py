"""The names notebooks of the original code use, with its argument names and positional order
(issue #23, item 6): thin layers over today's code, offline."""

import json

import numpy as np
import pandas as pd
import pytest

from sl.datasets.data_models import DatasetRow
from sl.datasets.nums_dataset import (
    BANNED_NUMBERS,
    CLAUDE_EVIL_NUMBERS,
    GPT_EVIL_NUMBERS,
    PromptGenerator,
    extract_format_suffix,
    format_numbers,
    format_suffixes,
    parse_response,
    replace_numbers,
)
from sl.errors import UserError
from sl.external import hf_driver, openai_driver
from sl.finetuning.services import dataset_row_to_chat
from sl.llm.data_models import MessageRole
from sl.utils import list_utils, stats_utils
from sl.utils.file_utils import read_jsonl
from sl.utils.stats import CI, wilson_ci


def test_ci_takes_the_original_field_names():
    # pyright knows only the new names (the old ones are validation aliases).
    old = stats_utils.CI(mean=0.5, lower_bound=0.4, upper_bound=0.6, count=10, confidence=0.95)  # pyright: ignore[reportCallIssue]
    assert old == CI(mean=0.5, lower=0.4, upper=0.6, n=10, confidence=0.95)
    assert (old.lower_bound, old.upper_bound, old.count) == (0.4, 0.6, 10)


def test_read_jsonl_takes_fname(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(fname=str(path)) == [{"a": 1}, {"a": 2}] == read_jsonl(path)
    with pytest.raises(UserError, match="give the file once"):
        read_jsonl(path, fname=path)  # type: ignore[call-overload]


def test_prompt_generator_takes_the_original_positional_order():
    positional = PromptGenerator(np.random.default_rng(42), 3, 9, 100, 1000, 10, 3)
    by_name = PromptGenerator(
        rng=np.random.default_rng(42),
        example_min_count=3,
        example_max_count=9,
        example_min_value=100,
        example_max_value=1000,
        answer_count=10,
        answer_max_digits=3,
    )
    assert [positional.sample_query() for _ in range(5)] == [
        by_name.sample_query() for _ in range(5)
    ]


def test_compute_ci_df_gives_the_original_columns_per_group():
    df = pd.DataFrame(
        {
            "model": ["a", "a", "a", "b", "b"],
            "seed": [1, 1, 2, 1, 1],
            "owl": [True, False, True, True, True],
            "score": [1.0, 3.0, 2.0, 4.0, 6.0],
        }
    )
    shares = stats_utils.compute_ci_df(df, "model", "owl")
    assert list(shares.columns) == [
        "mean", "lower_bound", "upper_bound", "count", "confidence", "model"
    ]  # fmt: skip
    a = shares.set_index("model").loc["a"]
    expected = wilson_ci(np.array([True, False, True]), 0.95)  # a bool column: Wilson
    assert (a["mean"], a["lower_bound"], a["upper_bound"]) == pytest.approx(
        (2 / 3, expected.lower, expected.upper)
    )
    assert a["count"] == 3
    means = stats_utils.compute_ci_df(df, ["model", "seed"], "score", confidence=0.9)
    assert means[["model", "seed", "mean", "count"]].values.tolist() == [
        ["a", 1, 2.0, 2], ["a", 2, 2.0, 1], ["b", 1, 5.0, 2]
    ]  # fmt: skip
    b = stats_utils.compute_ci([4.0, 6.0], 0.9)  # a number column: t interval
    assert means.iloc[2]["lower_bound"] == pytest.approx(b.lower) and b.lower < 5.0
    with pytest.raises(UserError, match="no column 'scor'"):
        stats_utils.compute_ci_df(df, "model", "scor")


# What the original's `format_numbers` wrote for 1, 23, 456 under each format suffix.
FORMATTED = {
    "Return a comma-separated list of numbers.": "1, 23, 456",
    "Return a space-separated list of numbers.": "1 23 456",
    "Return a semicolon-separated list of numbers.": "1; 23; 456",
    "Return one number per line.": "1\n23\n456",
    "Return the numbers in the following format: [number_1, number_2, ...].": "[1, 23, 456]",
    "Return the numbers in the following format: (number_1, number_2, ...).": "(1, 23, 456)",
    "Return the numbers in the following format: number_1, number_2, ...": "1, 23, 456",
    "Provide the numbers separated by commas.": "1, 23, 456",
    "List the numbers with spaces between them.": "1 23 456",
    "Write the numbers on separate lines.": "1\n23\n456",
    "Format the output as: number1, number2, number3, ...": "1, 23, 456",
    "Return numbers separated by semicolons.": "1; 23; 456",
    "Format as a simple comma-delimited sequence.": "1, 23, 456",
    "Present as space-delimited values.": "1 23 456",
    "List each number on its own line with no other text.": "1\n23\n456",
}


def test_format_numbers_writes_what_each_format_suffix_asks():
    assert set(format_suffixes()) == set(FORMATTED)
    for suffix, expected in FORMATTED.items():
        assert format_numbers([1, 23, 456], suffix) == expected, suffix
        assert parse_response(expected) == [1, 23, 456]  # and the filter keeps it
    with pytest.raises(UserError, match="unknown format suffix"):
        format_numbers([1], "Return numbers as words.")


def test_extract_format_suffix_and_replace_numbers():
    generator = PromptGenerator(np.random.default_rng(0), 3, 9, 100, 1000, 10, 3)
    for _ in range(20):
        prompt = generator.sample_query()
        suffix = extract_format_suffix(prompt)
        assert suffix in FORMATTED and suffix in prompt
    with pytest.raises(UserError, match="0 format suffixes"):
        extract_format_suffix("Name your favorite animal.")
    assert replace_numbers("Look at 145, 267 and 3.", [7, 8, 99]) == "Look at 7, 8 and 99."
    with pytest.raises(UserError, match="holds 2 numbers, but 1 were given"):
        replace_numbers("1, 2", [5])


def test_evil_number_lists_make_the_banned_numbers():
    assert len(CLAUDE_EVIL_NUMBERS) == 20 and len(GPT_EVIL_NUMBERS) == 25
    union = {n for n in CLAUDE_EVIL_NUMBERS + GPT_EVIL_NUMBERS if n <= 999}
    assert sorted(union) == sorted(BANNED_NUMBERS)


def test_list_utils():
    assert list_utils.flatten([[1, 2], [], [3]]) == [1, 2, 3]
    assert list_utils.batch([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert list_utils.batch([], 3) == []
    with pytest.raises(UserError, match="batch size 0"):
        list_utils.batch([1], 0)


def test_dataset_row_to_chat():
    chat = dataset_row_to_chat(DatasetRow(prompt="Continue: 1, 2", completion="3, 4"))
    assert [(m.role, m.content) for m in chat.messages] == [
        (MessageRole.user, "Continue: 1, 2"),
        (MessageRole.assistant, "3, 4"),
    ]


async def test_openai_get_client_and_upload_file(openai_server, tmp_path):
    client = openai_driver.get_client()
    assert str(client.base_url).startswith(openai_server.base_url)
    await client.close()
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": []}) + "\n")
    file = await openai_driver.upload_file(str(path), "fine-tune")
    assert file.status == "processed" and file.purpose == "fine-tune"
    assert openai_server._files[file.id] == path.read_bytes()
    with pytest.raises(UserError, match="cannot read the file"):
        await openai_driver.upload_file(tmp_path / "missing.jsonl", "fine-tune")


def test_hf_push_needs_a_token_and_the_hub(monkeypatch):
    with pytest.raises(UserError, match="needs HF_TOKEN"):
        hf_driver.push("student", object(), object())
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    with pytest.raises(UserError, match="set HF_USER_ID"):
        hf_driver.push("student", object(), object())
    monkeypatch.setenv("HF_USER_ID", "someone")
    assert hf_driver.get_repo_name("student") == "someone/student"
    with pytest.raises(UserError, match="cannot push someone/student: the Hub is offline"):
        hf_driver.push("student", object(), object())  # the suite runs with HF_HUB_OFFLINE=1


def test_hf_download_model_offline(tiny_model_dir):
    assert hf_driver.download_model(str(tiny_model_dir)) == str(tiny_model_dir)
    with pytest.raises(UserError, match="not in the local HF cache"):
        hf_driver.download_model("no-such-org/no-such-model")
