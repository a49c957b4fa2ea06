"""Outputs are owned by everything that decides their content; sl never overwrites a file it
did not make; re-filtering from a kept raw file is redone with a log line."""

import asyncio
import json

import pytest
from loguru import logger

from sl import phases
from sl.datasets.nums_dataset import NumbersFilter, get_reject_reasons
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.errors import UserError
from sl.evaluation.data_models import Evaluation
from sl.evaluation.services import run_evaluation
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model, SampleCfg
from sl.utils.fingerprint import callables_hash

MODEL = Model(id="gpt-4.1-nano", type="openai")


def _cfg(max_count=10, system_prompt="You love owls."):
    return Cfg(
        model=MODEL,
        system_prompt=system_prompt,
        sample_cfg=SampleCfg(temperature=1.0),
        prompt_set=NumsDatasetPromptSet(size=20, seed=1),
        filter_fns=[NumbersFilter(max_count=max_count)],
    )


def _answer(chat):
    n = len(chat.messages[-1].content) % 9 + 1  # 1..9 numbers
    return ", ".join(["123"] * n)


def _make(cfg, raw, filtered):
    return asyncio.run(phases.make_dataset(cfg, raw, filtered))


def test_stricter_filter_refilters_from_the_kept_raw_file(fake_driver, tmp_path):
    fake_driver.answer = _answer
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    first = _make(_cfg(max_count=10), raw, filtered)
    raw_before, asked = raw.read_bytes(), len(fake_driver.requests)
    messages = []
    handler = logger.add(messages.append, level="INFO")
    try:
        second = _make(_cfg(max_count=4), raw, filtered)
    finally:
        logger.remove(handler)
    assert first.filtered_rows == 20 and 0 < second.filtered_rows < 20
    assert len(filtered.read_text().splitlines()) == second.filtered_rows
    assert raw.read_bytes() == raw_before and len(fake_driver.requests) == asked  # free
    assert any("filters changed" in str(m) for m in messages)


def test_other_generation_config_is_refused_naming_the_part(fake_driver, tmp_path):
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    _make(_cfg(), raw, filtered)
    before = raw.read_bytes(), filtered.read_bytes()
    with pytest.raises(UserError, match="system_prompt differ"):
        _make(_cfg(system_prompt="You love eagles."), raw, filtered)
    assert (raw.read_bytes(), filtered.read_bytes()) == before


def test_swapped_raw_and_filtered_paths_are_refused(fake_driver, tmp_path):
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    _make(_cfg(), raw, filtered)
    before = raw.read_bytes(), filtered.read_bytes()
    with pytest.raises(UserError, match="holds a raw dataset, not a filtered dataset"):
        _make(_cfg(), filtered, raw)
    assert (raw.read_bytes(), filtered.read_bytes()) == before


def test_finetune_with_other_data_at_the_same_output_is_refused(openai_server, tmp_path):
    job = OpenAIFTJob(seed=1, source_model=MODEL, n_epochs=1)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "1"}) + "\n")
    out = tmp_path / "model.json"
    asyncio.run(phases.finetune(job, data, out))
    before = out.read_bytes()
    data.write_text(json.dumps({"prompt": "p", "completion": "2"}) + "\n")
    with pytest.raises(UserError, match="dataset differ"):
        asyncio.run(phases.finetune(job, data, out))
    assert out.read_bytes() == before and openai_server.ft_jobs_created == 1


def test_evaluation_output_with_rows_of_other_questions_is_refused(fake_driver, tmp_path):
    evaluation = Evaluation(
        questions=["a?", "b?"], n_samples_per_question=2, sample_cfg=SampleCfg()
    )
    out = tmp_path / "eval.jsonl"
    asyncio.run(run_evaluation(MODEL, evaluation, out))
    rows = out.read_text().splitlines()
    out.write_text(rows[0].replace('"a?"', '"c?"') + "\n")  # an edited file, same meta
    (tmp_path / "eval.jsonl.meta.json").write_text(
        json.dumps(
            {**json.loads((tmp_path / "eval.jsonl.meta.json").read_text()), "complete": False}
        )
    )
    with pytest.raises(UserError, match="other questions"):
        asyncio.run(run_evaluation(MODEL, evaluation, out))


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("results.csv", "mine\n", "not made by sl .results.csv."),  # not sl's folder
        ("experiment.json", "{not json", "experiment.json is corrupt"),  # one line, no traceback
    ],
)
def test_experiment_folder_sl_cannot_own_is_refused_untouched(tmp_path, name, content, error):
    from script_runner import experiment_cfg

    from sl.experiment.runner import run_experiment

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / name).write_text(content)
    with pytest.raises(UserError, match=error):
        asyncio.run(run_experiment(experiment_cfg(), folder, stages=("report",)))
    assert {p.name: p.read_text() for p in folder.iterdir()} == {name: content}


def _lenient(p, c):
    return not get_reject_reasons(c, max_count=10)


def _strict(p, c):
    return not get_reject_reasons(c, max_count=4)


def test_filter_fingerprints_follow_code_and_values():
    limit = 4

    def closure(p, c):
        return len(c) < limit

    assert callables_hash([_lenient]) != callables_hash([_strict])
    assert callables_hash([NumbersFilter(max_count=5)]) != callables_hash([NumbersFilter()])
    assert callables_hash([NumbersFilter(max_count=3)]) == callables_hash(
        [NumbersFilter(max_count=3)]
    )
    first = callables_hash([closure])
    limit = 5
    assert callables_hash([closure]) != first
    assert callables_hash([lambda p, c: True]) != callables_hash([lambda p, c: False])
