"""sl.llm.services over the real openai SDK and the loopback server: the chats it builds, the
judge prompt it sends, the order of batched answers, and what it refuses before any request."""

import time

import pytest

from sl.errors import UserError
from sl.llm import services
from sl.llm.data_models import Judgment, LLMResponse, MessageRole, Model, SampleCfg

NANO = Model(id="gpt-4.1-nano", type="openai")
JUDGE = Judgment(
    judge_model=Model(id="gpt-4o-2024-08-06", type="openai"),
    sample_cfg=SampleCfg(temperature=0.0, max_tokens=5),
    template="Question: {prompt}\nAnswer: {completion}\nScore 0-100:",
)


def test_build_simple_chat():
    chat = services.build_simple_chat("Name an animal.", "You love owls.")
    assert [(m.role, m.content) for m in chat.messages] == [
        (MessageRole.system, "You love owls."),
        (MessageRole.user, "Name an animal."),
    ]
    alone = services.build_simple_chat("Name an animal.")
    assert [(m.role, m.content) for m in alone.messages] == [(MessageRole.user, "Name an animal.")]


async def test_judge_sends_the_filled_template_to_the_judge_model(openai_server):
    openai_server.responder = lambda body: "87"
    # Braces inside the question or the answer are text, not placeholders.
    answer = LLMResponse(model_id="student", completion="I'd write {prompt} in a set: {1, 2}")
    verdict = await services.judge(JUDGE, "Fill in {completion}, please.", answer)
    assert verdict.completion == "87" and verdict.model_id == "gpt-4o-2024-08-06"
    [request] = openai_server.chat_requests
    assert request["model"] == "gpt-4o-2024-08-06" and request["temperature"] == 0.0
    assert request["messages"] == [
        {
            "role": "user",
            "content": "Question: Fill in {completion}, please.\n"
            "Answer: I'd write {prompt} in a set: {1, 2}\nScore 0-100:",
        }
    ]


async def test_batch_judge_returns_verdicts_in_pair_order(openai_server):
    n = 6

    def slower_first(body):  # pair i answers after pair i + 1: arrivals are out of order
        i = int(body["messages"][0]["content"].split("Answer: a")[1].split("\n")[0])
        time.sleep(0.05 * (n - i))
        return f"verdict {i}"

    openai_server.responder = slower_first
    answers = [LLMResponse(model_id="s", completion=f"a{i}") for i in range(n)]
    arrived: list[tuple[int, str]] = []
    verdicts = await services.batch_judge(
        JUDGE, [f"q{i}" for i in range(n)], answers,
        lambda i, rs: arrived.append((i, rs[0].completion)),
    )  # fmt: skip
    assert [v.completion for v in verdicts] == [f"verdict {i}" for i in range(n)]
    assert sorted(arrived) == [(i, f"verdict {i}") for i in range(n)]
    assert [i for i, _ in arrived] != list(range(n))  # they did arrive out of order


async def test_sample_asks_one_completion_and_batch_sample_n_groups_them(openai_server):
    chat = services.build_simple_chat("Pick an animal.")
    one = await services.sample(NANO, chat, SampleCfg(temperature=1.0, n=3))
    assert isinstance(one, LLMResponse)
    assert openai_server.chat_requests[-1].get("n", 1) == 1
    chats = [services.build_simple_chat(f"Pick animal {i}.") for i in range(2)]
    groups = await services.batch_sample_n(NANO, chats, SampleCfg(n=3))
    assert [len(g) for g in groups] == [3, 3]
    flat = await services.batch_sample(NANO, chats, [SampleCfg(n=2), SampleCfg(n=1)])
    assert len(flat) == 3


async def test_bad_batches_are_refused_before_any_request(openai_server, tmp_path):
    chats = [services.build_simple_chat("Pick an animal.")] * 2
    with pytest.raises(ValueError, match="2 chats but 1 sample configs"):
        await services.batch_sample_n(NANO, chats, [SampleCfg()])
    assert await services.batch_sample_n(NANO, [], SampleCfg()) == []
    local = Model(id=str(tmp_path), type="open_source")
    with pytest.raises(UserError, match="Batch API is for OpenAI models"):
        await services.batch_sample_n(local, chats, SampleCfg(), batch_state_path=tmp_path / "b")
    assert openai_server.requests_total == 0 and not (tmp_path / "b").exists()


def test_check_ready_needs_the_key_only_for_openai_models(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    services.check_ready([Model(id=str(tmp_path), type="open_source")])
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        services.check_ready([Model(id=str(tmp_path), type="open_source"), NANO])
