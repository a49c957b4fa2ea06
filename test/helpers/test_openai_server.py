"""Tests of the loopback OpenAI-compatible server, exercised through the real openai SDK."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai_server import FakeOpenAIServer, default_responder

PROMPT = "Continue: 123, 456. Add up to 5 new numbers."
MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def _client(srv: FakeOpenAIServer, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0, **kw)


def _poll(fn, is_done, max_polls: int = 50):
    for _ in range(max_polls):
        obj = fn()
        if is_done(obj):
            return obj
    raise AssertionError("never reached a terminal state")


# ------------------------------------------------------------------------------------- chat


def test_chat_completion_shape(server: FakeOpenAIServer) -> None:
    client = _client(server)
    r = client.chat.completions.create(model="gpt-4.1-nano", messages=MSGS, temperature=1.0)
    assert r.object == "chat.completion"
    assert r.model == "gpt-4.1-nano-2025-04-14"  # the dated snapshot, as api.openai.com says
    assert len(r.choices) == 1
    content = r.choices[0].message.content
    assert content is not None
    nums = [x.strip() for x in content.split(",")]
    assert len(nums) == 5 and all(len(x) == 3 and x.isdigit() for x in nums)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].logprobs is None
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(PROMPT.split())
    assert r.usage.completion_tokens == 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 5
    assert server.n_chat_ok == 1
    assert server.chat_requests[0]["temperature"] == 1.0
    assert server.endpoint_counts == {"POST /v1/chat/completions": 1}


def test_chat_n_seed_logprobs_maxtokens(server: FakeOpenAIServer) -> None:
    client = _client(server)
    r = client.chat.completions.create(
        model="m", messages=MSGS, n=3, seed=7, logprobs=True, top_logprobs=3
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    for c in r.choices:
        assert c.logprobs is not None and c.logprobs.content
        toks = c.logprobs.content
        assert "".join(t.token for t in toks) == c.message.content
        assert all(len(t.top_logprobs) == 3 and t.logprob < 0 for t in toks)
        assert toks[0].top_logprobs[0].logprob >= toks[0].top_logprobs[1].logprob
    again = client.chat.completions.create(model="m", messages=MSGS, n=3, seed=7)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]

    short = client.chat.completions.create(model="m", messages=MSGS, max_completion_tokens=2)
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 2

    owl = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Your favourite animal?"}]
    )
    assert owl.choices[0].message.content == "owl"


def test_custom_responder_and_stop(server: FakeOpenAIServer) -> None:
    server.responder = lambda body: f"choice {body['_choice_index']} END tail"
    client = _client(server)
    r = client.chat.completions.create(model="m", messages=MSGS, n=2, stop=["END"])
    assert [c.message.content for c in r.choices] == ["choice 0 ", "choice 1 "]
    server.responder = None
    assert default_responder({"messages": MSGS, "seed": 1}) == default_responder(
        {"messages": MSGS, "seed": 1}
    )


# ----------------------------------------------------------------------------- failures


def test_rate_limit_429_and_headers() -> None:
    with FakeOpenAIServer(rate_limit_rps=2) as srv:
        client = _client(srv)
        ok = client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
        assert ok.headers["x-ratelimit-limit-requests"] == "120"
        assert ok.headers["x-ratelimit-remaining-requests"] == "1"
        assert ok.headers["x-ratelimit-reset-requests"].endswith("ms")
        client.chat.completions.create(model="m", messages=MSGS)
        with pytest.raises(openai.RateLimitError) as ei:
            client.chat.completions.create(model="m", messages=MSGS)
        resp = ei.value.response
        assert resp.status_code == 429
        assert 0 < float(resp.headers["retry-after"]) <= 0.5
        assert int(resp.headers["retry-after-ms"]) > 0
        assert resp.headers["x-ratelimit-remaining-requests"] == "0"
        assert ei.value.code == "rate_limit_exceeded"
        assert srv.n_429 == 1 and srv.n_chat_ok == 2
        time.sleep(float(resp.headers["retry-after"]) + 0.02)
        client.chat.completions.create(model="m", messages=MSGS)
        # the SDK's own retry honours Retry-After and succeeds
        retrying = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=3)
        retrying.chat.completions.create(model="m", messages=MSGS)
        srv.rate_limit_rps = None
        raw = client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
        assert "x-ratelimit-limit-requests" not in raw.headers


def test_fail_next(server: FakeOpenAIServer) -> None:
    client = _client(server)
    server.fail_next(2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MSGS)
    server.fail_next(1, status=503)
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="m", messages=MSGS)
    assert ei.value.status_code == 503
    client.chat.completions.create(model="m", messages=MSGS)
    assert server.status_counts == {500: 2, 503: 1, 200: 1} and server.n_chat_ok == 1
    # with retries the SDK gets through an injected failure
    server.fail_next(1)
    retrying = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=2)
    retrying.chat.completions.create(model="m", messages=MSGS)


def test_malformed_body_raises_json_decode_error(server: FakeOpenAIServer) -> None:
    client = _client(server)
    server.malformed_next(1)
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="m", messages=MSGS)
    client.chat.completions.create(model="m", messages=MSGS)
    server.malformed_next(1, body={"object": "chat.completion", "choices": []})
    assert client.chat.completions.create(model="m", messages=MSGS).choices == []


def test_reject_params_answers_400_naming_the_parameter(server: FakeOpenAIServer) -> None:
    server.reject_params = {"o3": {"temperature"}}
    client = _client(server)
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="o3", messages=MSGS, temperature=1.0)
    assert ei.value.code == "unsupported_parameter" and ei.value.param == "temperature"
    client.chat.completions.create(model="o3", messages=MSGS)
    client.chat.completions.create(model="m", messages=MSGS, temperature=1.0)
    assert server.n_chat_ok == 2


def test_timeout_next(server: FakeOpenAIServer) -> None:
    client = _client(server, timeout=0.2)
    server.timeout_next(1, delay_s=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MSGS)
    client.chat.completions.create(model="m", messages=MSGS)


def test_api_key_required_and_404() -> None:
    with FakeOpenAIServer(require_api_key="sekret") as srv:
        with pytest.raises(openai.AuthenticationError):
            _client(srv).chat.completions.create(model="m", messages=MSGS)
        good = openai.OpenAI(base_url=srv.base_url, api_key="sekret", max_retries=0)
        good.chat.completions.create(model="m", messages=MSGS)
        assert srv.status_counts[401] == 1
        with pytest.raises(openai.NotFoundError):
            good.models.list()  # a route sl does not use
        with pytest.raises(openai.NotFoundError):
            good.files.content("file-nope")


# ------------------------------------------------------------------------------------ files


def test_file_upload_roundtrip(server: FakeOpenAIServer) -> None:
    client = _client(server)
    data = b'{"messages": []}\r\n' + bytes(range(256)) + b"\n\r\n--tail"
    f = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert f.object == "file" and f.bytes == len(data) and f.filename == "train.jsonl"
    assert f.purpose == "fine-tune"
    assert client.files.content(f.id).read() == data
    assert server.endpoint_counts == {"POST /v1/files": 1, "GET /v1/files/{id}/content": 1}


# ------------------------------------------------------------------------------ fine-tuning

TRAIN = b"".join(
    json.dumps(
        {"messages": [{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"}]}
    ).encode()
    + b"\n"
    for _ in range(4)
)


def test_fine_tune_job_succeeds(server: FakeOpenAIServer) -> None:
    client = _client(server)
    fid = client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model="gpt-4.1-nano-2025-04-14",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        seed=42,
    )
    assert job.status == "validating_files" and job.seed == 42
    assert job.hyperparameters.n_epochs == 2
    seen = [job.status]
    final = _poll(
        lambda: client.fine_tuning.jobs.retrieve(job.id),
        lambda j: seen.append(j.status) or j.status in ("succeeded", "failed"),
    )
    assert seen == ["validating_files", "queued", "running", "succeeded"]
    assert final.fine_tuned_model == f"ft:gpt-4.1-nano-2025-04-14:sl-test::{job.id[6:14]}"
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert [e.message for e in events][:2] == ["Job status: succeeded", "Job status: running"]
    assert [j.id for j in client.fine_tuning.jobs.list(limit=100).data] == [job.id]
    assert server.ft_jobs_created == 1
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="m", training_file="file-missing")
    assert server.ft_jobs_created == 1


def test_fine_tune_job_fails() -> None:
    with FakeOpenAIServer(ft_fail=True, ft_steps_per_status=2) as srv:
        client = _client(srv)
        fid = client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model="m", training_file=fid, suffix="x")
        statuses = []
        final = _poll(
            lambda: client.fine_tuning.jobs.retrieve(job.id),
            lambda j: statuses.append(j.status) or j.status in ("succeeded", "failed"),
        )
        assert statuses.count("queued") == 2  # two retrieves per status step
        assert final.status == "failed" and final.fine_tuned_model is None
        assert final.error is not None and final.error.code == "training_failed"


# ---------------------------------------------------------------------------------- batches


def test_batch_roundtrip(server: FakeOpenAIServer) -> None:
    client = _client(server)
    server.responder = lambda body: "reply to " + body["messages"][-1]["content"]
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": f"prompt{i}"}]},
        }
        for i in range(5)
    ]
    lines.append({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions", "body": {}})
    data = "\n".join(json.dumps(x) for x in lines).encode()
    fid = client.files.create(file=("b.jsonl", data), purpose="batch").id
    batch = client.batches.create(
        input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    assert [b.id for b in client.batches.list(limit=100).data] == [batch.id]
    final = _poll(
        lambda: client.batches.retrieve(batch.id), lambda b: b.status in ("completed", "failed")
    )
    assert final.status == "completed" and final.output_file_id
    assert final.request_counts is not None
    assert (
        final.request_counts.total,
        final.request_counts.completed,
        final.request_counts.failed,
    ) == (6, 5, 1)
    out = [json.loads(x) for x in client.files.content(final.output_file_id).text.splitlines()]
    by_id = {r["custom_id"]: r for r in out}
    assert set(by_id) == {f"q{i}" for i in range(5)}  # the bad line has no result
    for i in range(5):
        resp = by_id[f"q{i}"]["response"]
        assert resp["status_code"] == 200 and by_id[f"q{i}"]["error"] is None
        assert resp["body"]["choices"][0]["message"]["content"] == f"reply to prompt{i}"
    assert server.batches_created == 1
    assert server.n_chat_ok == 0  # batch lines are not chat endpoint calls
    with pytest.raises(openai.BadRequestError):
        client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )


# -------------------------------------------------------------------------------- concurrency


def test_burst_of_200_concurrent_requests() -> None:
    with FakeOpenAIServer(latency_s=0.05) as srv:
        client = _client(srv)

        def one(i: int) -> str:
            r = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"hi {i}"}]
            )
            return r.choices[0].message.content or ""

        with ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(one, range(200)))
        assert results == ["owl"] * 200
        assert srv.n_chat_ok == 200 and srv.requests_total == 200

        # raw connection burst: 300 sockets opened at once are all accepted by the backlog
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(300)]
        for s in socks:
            s.close()


async def test_async_client_gather() -> None:
    with FakeOpenAIServer(latency_s=0.02) as srv:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
        rs = await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=MSGS, seed=i) for i in range(50))
        )
        assert len({r.id for r in rs}) == 50
        await client.close()
