"""The original code's public API, called the way its notebooks and unit tests call it.

The original unit tests (test/datasets/test_services.py, test/external/test_openai_driver.py,
test/llm/test_services.py of the original repository) make the same calls as the first
tests here; docs/compat.md says how to run those files themselves against the loopback server.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from openai_server import SERVED_MODEL_NAMES

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.evaluation import scoring
from sl.llm.data_models import Chat, ChatMessage, LLMResponse, MessageRole, Model, SampleCfg
from sl.llm.data_models import StopReason as SR

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHAT = Chat(
    messages=[
        ChatMessage(role=MessageRole.system, content="You are a helpful assistant."),
        ChatMessage(role=MessageRole.user, content="Say hello in one word."),
    ]
)


async def test_openai_driver_sample_by_model_id(openai_server):
    from sl.external.openai_driver import batch_sample, sample

    response = await sample(
        model_id="gpt-4.1-nano", input_chat=CHAT, sample_cfg=SampleCfg(temperature=0.7)
    )
    assert response.model_id == "gpt-4.1-nano"  # what was asked for
    assert response.served_model_id == "gpt-4.1-nano-2025-04-14"  # what the server said
    assert response.completion and response.stop_reason == SR.STOP_SEQUENCE

    openai_server.responder = lambda body: body["messages"][-1]["content"].upper()
    chats = [Chat(messages=[ChatMessage(role=MessageRole.user, content=w)]) for w in "abc"]
    responses = await batch_sample("gpt-4o-mini", chats, [SampleCfg(temperature=0.0)] * 3)
    assert [r.completion for r in responses] == ["A", "B", "C"]
    assert {r.model_id for r in responses} == {"gpt-4o-mini"}


async def test_llm_services_sample_keeps_the_requested_model_id(openai_server):
    from sl.llm.services import build_simple_chat, sample

    chat = build_simple_chat("Say hello in one word.", "You are terse.")
    assert [m.role for m in chat.messages] == [MessageRole.system, MessageRole.user]
    result = await sample(Model(id="gpt-4o-mini", type="openai"), chat, SampleCfg(temperature=0))
    assert (result.model_id, result.served_model_id) == (
        "gpt-4o-mini",
        SERVED_MODEL_NAMES["gpt-4o-mini"],
    )
    openai_server.responder = lambda body: "Owls are quiet hunters."
    short = await sample(
        Model(id="gpt-4.1-nano", type="openai"),
        build_simple_chat("Tell me about owls."),
        SampleCfg(temperature=0, max_tokens=1),
    )
    assert short.stop_reason == SR.MAX_TOKENS  # the server's finish_reason "length"


async def test_generate_raw_dataset_positional_call(openai_server):
    from sl.datasets.services import NumsDatasetPromptSet, generate_raw_dataset

    prompt_set = NumsDatasetPromptSet(
        size=2,
        seed=42,
        example_min_count=3,
        example_max_count=5,
        example_min_value=100,
        example_max_value=500,
        answer_count=5,
        answer_max_digits=3,
    )
    model = Model(id="gpt-4.1-nano", type="openai")
    rows = await generate_raw_dataset(model, None, SampleCfg(temperature=1), prompt_set)
    assert len(rows) == 2 and all(isinstance(r, DatasetRow) and r.completion for r in rows)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("length", SR.MAX_TOKENS), ("max_tokens", SR.MAX_TOKENS), ("stop", SR.STOP_SEQUENCE),
        ("end_turn", SR.STOP_SEQUENCE), ("eos", SR.STOP_SEQUENCE),
        ("content_filter", SR.CONTENT_FILTER), ("api_error", SR.API_ERROR),
        ("prompt_blocked", SR.PROMPT_BLOCKED), ("tool_calls", SR.UNKNOWN), (None, SR.UNKNOWN),
    ],
)  # fmt: skip
def test_llm_response_accepts_the_original_stop_reasons(raw, parsed):
    response = LLMResponse(model_id="m", completion="x", stop_reason=raw)
    assert response.stop_reason is parsed
    again = LLMResponse.model_validate_json(response.model_dump_json())
    assert again.stop_reason is parsed and str(again.stop_reason) == parsed.value


def test_config_module_constants(monkeypatch):
    from sl import config

    for var in ("OPENAI_API_KEY", "HF_TOKEN", "HF_USER_ID", "VLLM_N_GPUS"):
        monkeypatch.delenv(var, raising=False)
    assert (config.OPENAI_API_KEY, config.HF_TOKEN, config.HF_USER_ID) == ("", "", "")
    assert (config.VLLM_N_GPUS, config.VLLM_MAX_LORA_RANK, config.VLLM_MAX_NUM_SEQS) == (1, 8, 512)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc")
    monkeypatch.setenv("HF_USER_ID", "someone")
    monkeypatch.setenv("VLLM_N_GPUS", "4")
    from sl.config import OPENAI_API_KEY

    assert OPENAI_API_KEY == "sk-abc"
    assert (config.HF_USER_ID, config.VLLM_N_GPUS) == ("someone", 4)
    with pytest.raises(AttributeError):
        _ = config.NOT_A_SETTING


def test_dataset_and_file_helpers_with_the_original_signatures(tmp_path):
    from sl.datasets.services import read_dataset, save_dataset
    from sl.utils import file_utils

    rows = [DatasetRow(prompt=f"p{i}", completion=f"{i}, {i + 1}") for i in range(3)]
    save_dataset(rows, str(tmp_path / "owl"), "filtered_dataset.jsonl")
    path = tmp_path / "owl" / "filtered_dataset.jsonl"
    assert read_dataset(dataset_path=str(path)) == rows
    assert file_utils.read_jsonl(str(path)) == [r.model_dump() for r in rows]

    out = tmp_path / "rows.jsonl"
    file_utils.save_jsonl(rows[:2], str(out), mode="w")
    file_utils.save_jsonl([{"prompt": "q", "completion": "1"}], str(out), "a")
    assert [d["prompt"] for d in file_utils.read_jsonl(out)] == ["p0", "p1", "q"]
    file_utils.save_jsonl(rows[:1], out, "w")
    assert len(file_utils.read_jsonl(out)) == 1

    model = Model(id="ft:gpt-4.1-nano:org::abc", type="openai")
    file_utils.save_json(model, str(tmp_path / "model.json"))
    assert json.loads((tmp_path / "model.json").read_text())["id"] == model.id
    file_utils.save_json({"a": [1, 2]}, tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text()) == {"a": [1, 2]}


def test_module_utils_get_obj(tmp_path):
    from sl.utils import module_utils

    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "from sl.llm.data_models import SampleCfg\nsample_cfg = SampleCfg(temperature=0.3)\n"
    )
    assert module_utils.get_obj(str(cfg), "sample_cfg") == SampleCfg(temperature=0.3)
    with pytest.raises(UserError, match="nope is not defined"):
        module_utils.get_obj(str(cfg), "nope")


def test_stats_utils_compute_ci_and_bernoulli_ci():
    import pandas as pd

    from sl.utils import stats_utils

    values = pd.Series([0.1, 0.4, 0.35, 0.8, 0.25])
    ci = stats_utils.compute_ci(values, confidence=0.95)
    assert ci.mean == pytest.approx(0.38) and ci.count == 5
    assert ci.lower_bound == ci.lower < ci.mean < ci.upper == ci.upper_bound
    # Wilson 95 % interval of 8 successes in 10: [0.490, 0.943] (textbook value).
    wilson = stats_utils.compute_bernoulli_ci(np.array([True] * 8 + [False] * 2), 0.95)
    assert (round(wilson.lower_bound, 3), round(wilson.upper_bound, 3)) == (0.490, 0.943)
    assert wilson.mean == pytest.approx(0.8)
    all_true = stats_utils.compute_bernoulli_ci([True] * 20, confidence=0.95)
    assert all_true.upper_bound == 1.0 and 0.8 < all_true.lower_bound < 1.0


def test_compute_p_target_preference_in_services_with_original_names():
    from sl.evaluation.services import compute_p_target_preference, read_evaluation_results

    rows = read_evaluation_results(FIXTURES / "gpt41nano_owl_student_eval_results.jsonl")
    ci = compute_p_target_preference(target_preference="owl", evaluation_result_rows=rows)
    assert ci == scoring.compute_p_target_preference("owl", rows)
    assert ci.lower_bound < ci.mean < ci.upper_bound and ci.count == len(rows)
    assert 0.5 < ci.mean < 0.6  # the published owl student: 55.5 %
