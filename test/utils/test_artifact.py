"""The one artifact guard: completeness is checked from the file's digest, not assumed."""

import asyncio
import json
import random

import pytest

from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.errors import UserError
from sl.llm.data_models import Model, SampleCfg
from sl.phases import make_dataset
from sl.utils.artifact import artifact
from sl.utils.run_meta import meta_path, read_meta


def _write(out, text):
    out.path.write_text(text)
    out.finish(rows=text.count("\n"))


def test_finished_artifact_is_complete_until_its_file_changes(tmp_path):
    path = tmp_path / "out.jsonl"
    with artifact(path, "k", "test output") as out:
        assert not out.complete
        _write(out, "a\nb\n")
    with artifact(path, "k", "test output") as out:
        assert out.complete and out.meta["rows"] == 2

    path.write_text("a\n")  # a row removed by hand
    with artifact(path, "k", "test output") as out:
        assert not out.complete
        assert read_meta(path)["complete"] is False  # a kill here still leaves it unfinished
        _write(out, "a\nb\n")

    path.unlink()  # the file deleted, its meta kept
    with artifact(path, "k", "test output") as out:
        assert not out.complete


def test_meta_from_before_digests_is_trusted_once_and_upgraded(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("{}")
    meta_path(path).write_text(json.dumps({"config_hash": "k", "complete": True}))
    with artifact(path, "k", "test output") as out:
        assert out.complete
    assert read_meta(path)["digest"]["lines"] == 0
    path.write_text('{"x": 1}')
    with artifact(path, "k", "test output") as out:
        assert not out.complete


def test_adopt_claims_an_old_finished_file_and_refuses_a_foreign_one(tmp_path):
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours.write_text("ours")
    theirs.write_text("theirs")

    def is_ours(path):
        return path.read_text() == "ours"

    with artifact(ours, "k", "scores", adopt=is_ours) as out:
        assert out.complete
    with (
        pytest.raises(UserError, match="was not made by this config"),
        artifact(theirs, "k", "scores", adopt=is_ours),
    ):
        pass
    assert theirs.read_text() == "theirs" and not meta_path(theirs).exists()


def test_another_key_is_refused_naming_the_part(tmp_path):
    path = tmp_path / "out.jsonl"
    with artifact(path, "k1", "test output", parts={"model": "a", "data": "x"}) as out:
        _write(out, "a\n")
    with (
        pytest.raises(UserError, match="model differ"),
        artifact(path, "k2", "test output", parts={"model": "b", "data": "x"}),
    ):
        pass
    assert path.read_text() == "a\n"


def _cfg(n: int = 12) -> Cfg:
    return Cfg(
        model=Model(id="gpt-4.1-nano", type="openai"),
        system_prompt=None,
        sample_cfg=SampleCfg(temperature=1.0),
        prompt_set=NumsDatasetPromptSet(size=n, seed=3),
    )


def test_deleted_raw_rows_are_made_again_and_files_come_out_in_prompt_order(fake_driver, tmp_path):
    # Answers of a deterministic teacher, delivered in shuffled order each run.
    fake_driver.answer = lambda chat: str(len(chat.messages[-1].content))
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    asyncio.run(make_dataset(_cfg(), raw, filtered))
    first = raw.read_bytes()
    prompts = _cfg().prompt_set.prompts()
    assert [json.loads(line)["prompt"] for line in first.splitlines()] == prompts

    lines = first.splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    raw.write_bytes(b"".join(lines[:-3]))  # three rows lost, the rest out of order
    asked = len(fake_driver.requests)
    asyncio.run(make_dataset(_cfg(), raw, filtered))
    assert len(fake_driver.requests) - asked == 3  # only the missing rows are asked again
    assert raw.read_bytes() == first

    filtered.unlink()  # deleted, meta kept: made again from the raw file, for free
    asked = len(fake_driver.requests)
    summary = asyncio.run(make_dataset(_cfg(), raw, filtered))
    assert filtered.exists() and summary.filtered_rows == 12
    assert len(fake_driver.requests) == asked
