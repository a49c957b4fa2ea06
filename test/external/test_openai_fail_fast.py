"""A server that cannot be reached or refuses the key stops a run at once, with one line and a
bounded number of requests; a low starting rate learns the real one."""

import asyncio
import socket
import time

import pytest
from loguru import logger
from script_runner import cli_args, run

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.external import openai_client
from sl.external.openai_client import ServerUnreachableError
from sl.finetuning.data_models import OpenAIFTJob
from sl.finetuning.services import run_finetuning_job
from sl.llm import services as llm
from sl.llm.data_models import Model, SampleCfg

MODEL = Model(id="gpt-4.1-nano", type="openai")


def _chats(n):
    return [llm.build_simple_chat(f"Continue: {i}, {i + 1}. Add 3 new numbers.") for i in range(n)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def warnings():
    found: list[str] = []
    handler = logger.add(lambda m: found.append(str(m)), level="WARNING")
    yield found
    logger.remove(handler)


def test_a_dead_server_stops_every_prompt_within_the_window(monkeypatch, warnings):
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BACKOFF_BASE_S", "0.2")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "100")  # retries alone would take hours
    monkeypatch.setattr(openai_client, "BREAKER_MIN_SPAN_S", 0.5)
    monkeypatch.setattr(openai_client, "BREAKER_WINDOW_S", 3.0)
    start = time.monotonic()
    with pytest.raises(ServerUnreachableError) as caught:
        asyncio.run(llm.batch_sample(MODEL, _chats(2000), SampleCfg()))
    assert time.monotonic() - start < 5.0
    message = str(caught.value)
    assert "127.0.0.1" in message and "OPENAI_BASE_URL" in message and "\n" not in message
    # One warning when the connection errors start, not one per request.
    assert sum("retrying; stopping if" in w for w in warnings) == 1


def test_a_dead_server_ends_the_script_in_one_line_within_a_minute(cfg_file, tmp_path):
    env = {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{_closed_port()}/v1",
        "OPENAI_API_KEY": "sk-test",
        "SL_NO_DOTENV": "1",
    }
    paths = {"raw_dataset_path": tmp_path / "r.jsonl", "filtered_dataset_path": tmp_path / "f"}
    start = time.monotonic()
    proc = run("generate_dataset.py", *cli_args(cfg_file, "dataset_cfg", **paths),
               env_extra=env, check=False)  # fmt: skip
    assert time.monotonic() - start < 30  # the defaults: a 5 s streak of 20 attempts
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "cannot be reached" in errors[0]


def test_a_blip_of_refused_connections_does_not_stop_the_run(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "20")
    openai_server.fail_route_next("POST /v1/chat/completions", 40, status=0)  # dropped
    responses = asyncio.run(llm.batch_sample(MODEL, _chats(30), SampleCfg()))
    assert len(responses) == 30


def test_a_refused_key_stops_at_the_first_answer(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_MAX_CONCURRENCY", "4")
    openai_server.require_api_key = "another-key"
    with pytest.raises(UserError) as caught:
        asyncio.run(llm.batch_sample(MODEL, _chats(300), SampleCfg()))
    assert "OPENAI_API_KEY was refused" in str(caught.value) and "\n" not in str(caught.value)
    # Only the requests already in flight when the first 401 came back reached the server.
    assert openai_server.requests_total <= 4


def test_a_refused_key_is_not_retried_by_a_job(openai_server, tmp_path):
    openai_server.require_api_key = "another-key"
    job = OpenAIFTJob(seed=1, source_model=MODEL, n_epochs=1)
    rows = [DatasetRow(prompt="p", completion="1")]
    with pytest.raises(UserError, match="OPENAI_API_KEY was refused"):
        asyncio.run(run_finetuning_job(job, rows, tmp_path / "m.json"))
    assert openai_server.requests_total == 1


@pytest.mark.parametrize("advertised", [50.0, None])
def test_a_low_starting_rate_learns_the_real_one(openai_server, monkeypatch, advertised):
    monkeypatch.setenv("OPENAI_START_RPS", "0.01")  # one request per 100 s, as a start
    openai_server.rate_limit_rps = advertised
    start = time.monotonic()
    responses = asyncio.run(llm.batch_sample(MODEL, _chats(20), SampleCfg()))
    assert len(responses) == 20 and openai_server.n_429 == 0
    # Advertised: the header's limit at once (~0.5 s); silent: slow start from 1 req/s,
    # doubling (~3 s). Before: 100 s per request until the rate grew.
    assert time.monotonic() - start < (2.0 if advertised else 8.0)
