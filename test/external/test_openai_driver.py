"""The OpenAI driver through the real SDK against the loopback server."""

import asyncio

import pytest
from loguru import logger
from script_runner import TEST_API_KEY

from sl.errors import UserError
from sl.llm import services as llm
from sl.llm.data_models import Model, SampleCfg, StopReason
from sl.llm.driver import SampleError

MODEL = Model(id="gpt-4.1-nano", type="openai")


def _chats(n):
    return [llm.build_simple_chat(f"Continue: {i}, {i + 1}. Add 3 new numbers.") for i in range(n)]


def test_samples_with_fields_and_usage(openai_server):
    cfg = SampleCfg(temperature=0.5, max_tokens=20, seed=3, logprobs=True, top_logprobs=2, n=2)
    groups = asyncio.run(llm.batch_sample_n(MODEL, _chats(3), cfg))
    assert [len(g) for g in groups] == [2, 2, 2]
    response = groups[0][0]
    assert [int(x) for x in response.completion.split(", ")]
    assert response.stop_reason == StopReason.STOP_SEQUENCE and response.logprobs
    body = openai_server.chat_requests[0]
    assert body["temperature"] == 0.5 and body["seed"] == 3 and body["n"] == 2
    assert body["max_tokens"] == 20 and body["top_logprobs"] == 2
    assert "top_p" not in body  # unset fields are not sent
    from sl.external.openai_driver import get_driver

    assert sum(get_driver().usage.completion_tokens.values()) > 0


def test_max_tokens_stop_reason(openai_server):
    openai_server.responder = lambda body: "one two three four five"
    r = asyncio.run(llm.sample(MODEL, _chats(1)[0], SampleCfg(max_tokens=2)))
    assert r.stop_reason == StopReason.MAX_TOKENS


def test_retries_5xx_timeouts_and_malformed_bodies(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_TIMEOUT_S", "0.5")
    openai_server.fail_next(3, status=503)
    openai_server.malformed_next(1)
    openai_server.timeout_next(1, delay_s=1.5)
    responses = asyncio.run(llm.batch_sample(MODEL, _chats(10), SampleCfg()))
    assert len(responses) == 10 and all(r.completion for r in responses)
    # 10 successes plus at least 4 failed attempts (3 x 503 — one of them also hanging past
    # the client timeout — and 1 malformed body) that were retried.
    assert openai_server.endpoint_counts["POST /v1/chat/completions"] >= 14
    assert openai_server.n_chat_ok >= 10


def test_429s_slow_down_instead_of_failing(openai_server):
    openai_server.rate_limit_rps = 20
    responses = asyncio.run(llm.batch_sample(MODEL, _chats(60), SampleCfg()))
    assert len(responses) == 60
    assert openai_server.n_chat_ok == 60
    from sl.external.openai_driver import get_driver

    # The pacer learned the advertised limit (20 req/s = 1200/min) from the headers.
    assert get_driver().limiter.rate <= 20


def test_a_request_that_keeps_failing_is_reported_and_the_rest_delivered(
    openai_server, monkeypatch
):
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "2")
    openai_server.responder = lambda body: (
        (_ for _ in ()).throw(RuntimeError("boom"))
        if ("13, 14" in body["messages"][-1]["content"])
        else "1, 2"
    )
    delivered = {}
    with pytest.raises(SampleError, match="1 request"):
        asyncio.run(
            llm.batch_sample_n(
                MODEL, _chats(20), SampleCfg(), on_result=lambda i, rs: delivered.setdefault(i, rs)
            )
        )
    assert sorted(delivered) == [i for i in range(20) if i != 13]


def test_client_errors_are_not_retried(openai_server):
    openai_server.fail_next(1, status=400)
    with pytest.raises(SampleError, match="HTTP 400 from 127.0.0.1"):
        asyncio.run(llm.batch_sample(MODEL, _chats(1), SampleCfg()))
    assert openai_server.endpoint_counts["POST /v1/chat/completions"] == 1


def test_missing_key_names_the_variable(monkeypatch, openai_server):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        asyncio.run(llm.batch_sample(MODEL, _chats(1), SampleCfg()))


def test_key_never_logged(openai_server):
    lines = []
    handler = logger.add(lines.append, level="DEBUG")
    try:
        openai_server.fail_next(1)
        asyncio.run(llm.batch_sample(MODEL, _chats(3), SampleCfg()))
    finally:
        logger.remove(handler)
    assert lines and not any(TEST_API_KEY in str(line) for line in lines)


def test_paces_by_tokens_when_the_token_budget_binds(openai_server):
    openai_server.token_limit_tps = 1500
    responses = asyncio.run(llm.batch_sample(MODEL, _chats(250), SampleCfg()))
    assert len(responses) == 250 and openai_server.n_chat_ok == 250
    from sl.external.openai_driver import get_driver

    assert get_driver().limiter.token_rate == pytest.approx(1500 * 0.995)
    # Paced by the learned budget, not by 429s (only the first requests, sent before the
    # limit was known, may be refused).
    assert openai_server.n_429 <= 25


def test_a_429_is_not_fatal_while_the_server_answers(openai_server, monkeypatch):
    from sl.external import openai_client

    monkeypatch.setattr(openai_client, "MAX_RATE_LIMIT_RETRIES", 1)
    openai_server.fail_next(100, status=429)  # about 5 per request, each above the cap
    responses = asyncio.run(llm.batch_sample(MODEL, _chats(20), SampleCfg()))
    assert len(responses) == 20 and openai_server.n_429 == 100


def test_reasoning_models_are_recognised_behind_fine_tuned_ids(openai_server):
    from sl.external.openai_driver import is_reasoning_model

    assert is_reasoning_model("o3") and is_reasoning_model("gpt-5-mini")
    assert is_reasoning_model("ft:o4-mini-2025-04-16:org::abc123")
    assert is_reasoning_model("ft:o3-mini:org:suffix:abc123")
    assert not is_reasoning_model("gpt-4.1-nano")
    # The job's random suffix may start like a reasoning family; only the base counts.
    assert not is_reasoning_model("ft:gpt-4.1-nano-2025-04-14:org::o3xYz")
    model = Model(id="ft:o4-mini-2025-04-16:org::abc123", type="openai")
    cfg = SampleCfg(temperature=0.5, top_p=0.9, logprobs=True, top_logprobs=2, seed=1)
    asyncio.run(llm.sample(model, _chats(1)[0], cfg))
    body = openai_server.chat_requests[0]
    assert body["seed"] == 1
    assert not {"temperature", "top_p", "logprobs", "top_logprobs"} & set(body)


def test_a_parameter_rejected_for_one_model_is_still_sent_for_another(openai_server):
    openai_server.reject_params = {"picky-model": {"seed"}}
    cfg = SampleCfg(seed=5)
    picky = asyncio.run(llm.sample(Model(id="picky-model", type="openai"), _chats(1)[0], cfg))
    judge = asyncio.run(llm.sample(MODEL, _chats(1)[0], cfg))
    assert picky.completion and judge.completion
    sent = [(b["model"], "seed" in b) for b in openai_server.chat_requests]
    # The picky model's second try goes without the seed; the other model still gets it.
    assert sent == [("picky-model", True), ("picky-model", False), ("gpt-4.1-nano", True)]


def test_a_body_without_choices_is_retried(openai_server):
    openai_server.malformed_next(2, body={"object": "chat.completion", "choices": []})
    response = asyncio.run(llm.sample(MODEL, _chats(1)[0], SampleCfg()))
    assert response.completion
    assert openai_server.endpoint_counts["POST /v1/chat/completions"] == 3


def test_giving_up_chains_the_last_cause(openai_server, monkeypatch):
    import openai

    monkeypatch.setenv("OPENAI_MAX_RETRIES", "2")
    openai_server.fail_next(3, status=503)
    with pytest.raises(SampleError) as caught:
        asyncio.run(llm.batch_sample(MODEL, _chats(1), SampleCfg()))
    error = caught.value.failures[0]
    assert "after 3 attempts" in str(error) and "HTTP 503" in str(error)
    assert isinstance(error.__cause__, openai.InternalServerError)
    assert error.__cause__.status_code == 503


class _BrokenClient:
    """An SDK client whose request hits a programming error (as a bug or an incompatible SDK
    would): the driver must raise it at once instead of retrying it as if it were transient."""

    def __init__(self, error: Exception):
        self.calls = 0
        self.error = error
        self.chat = self.completions = self.with_raw_response = self

    async def create(self, **params):
        self.calls += 1
        raise self.error

    async def close(self):
        pass


@pytest.mark.parametrize("error", [AttributeError("x"), TypeError("y"), IndexError("z")])
def test_programming_errors_are_not_retried(openai_server, monkeypatch, error):
    from sl.external import openai_driver

    client = _BrokenClient(error)
    monkeypatch.setattr(openai_driver, "make_async_client", lambda settings: client)
    with pytest.raises(SampleError) as caught:
        asyncio.run(llm.batch_sample(MODEL, _chats(1), SampleCfg()))
    assert caught.value.failures[0] is error
    assert client.calls == 1
