"""Fine-tuning and Batch API calls retry transient errors; failed requests name their cause."""

import asyncio
import json
import socket

import pytest

from sl.datasets.data_models import DatasetRow
from sl.errors import RemoteError, UserError
from sl.external.openai_finetune import train_file_for
from sl.finetuning.data_models import OpenAIFTJob
from sl.finetuning.services import run_finetuning_job
from sl.llm import services as llm
from sl.llm.data_models import Model, SampleCfg
from sl.llm.driver import SampleError

MODEL = Model(id="gpt-4.1-nano", type="openai")
JOB = OpenAIFTJob(seed=1, source_model=MODEL, n_epochs=1)
ROWS = [DatasetRow(prompt=f"p{i}", completion="1, 2") for i in range(5)]


def test_finetune_polls_on_through_blips(openai_server, tmp_path):
    openai_server.fail_route_next("POST /v1/files", 1, status=502)
    openai_server.fail_route_next("GET /v1/fine_tuning/jobs/{id}", 2, status=503)
    openai_server.fail_route_next("GET /v1/fine_tuning/jobs/{id}", 1, status=0)  # dropped
    openai_server.fail_route_next("GET /v1/fine_tuning/jobs/{id}/events", 1, status=429)
    model = asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    assert model.id.startswith("ft:gpt-4.1-nano")
    assert openai_server.ft_jobs_created == 1
    assert openai_server.endpoint_counts["POST /v1/files"] == 2  # one 502, one upload
    assert openai_server.status_counts[503] == 2 and openai_server.status_counts[502] == 1


def test_a_lost_create_answer_never_starts_a_second_paid_job(openai_server, tmp_path):
    # The job is created, but the answer never arrives: the retry finds that job.
    openai_server.fail_route_next("POST /v1/fine_tuning/jobs", 1, status=-1)
    asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    assert openai_server.ft_jobs_created == 1
    state = json.loads((tmp_path / "m.json.job.json").read_text())
    assert state["job_id"].startswith("ftjob-")


def test_batch_survives_blips_and_a_lost_create_answer(openai_server, tmp_path):
    from sl.datasets.services import NumsDatasetPromptSet, generate_raw_dataset

    openai_server.fail_route_next("POST /v1/batches", 1, status=-1)
    openai_server.fail_route_next("GET /v1/batches/{id}", 2, status=500)
    openai_server.fail_route_next("GET /v1/files/{id}/content", 1, status=0)
    rows = asyncio.run(
        generate_raw_dataset(
            MODEL, None, SampleCfg(), NumsDatasetPromptSet(size=6), tmp_path / "r.jsonl", True
        )
    )
    assert len(rows) == 6 and openai_server.batches_created == 1


def test_training_file_lives_in_a_hidden_sidecar_folder(openai_server, tmp_path):
    user_file = tmp_path / "m_train.jsonl"  # the name the original code wrote to
    user_file.write_text("my own data\n")
    asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    assert user_file.read_text() == "my own data\n"
    train = train_file_for(tmp_path / "m.json")
    assert train.parent.name == ".sl" and len(train.read_text().splitlines()) == 5


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_names_host_after_retries(monkeypatch, openai_server, tmp_path):
    port = _closed_port()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "2")
    with pytest.raises(RemoteError) as e:
        asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    message = str(e.value)
    assert f"connection refused to 127.0.0.1:{port}" in message and "3 attempts" in message
    assert "\n" not in message and isinstance(e.value.__cause__, Exception)


def test_job_state_survives_an_outage_and_a_rerun_resumes(openai_server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "1")
    openai_server.fail_route_next("GET /v1/fine_tuning/jobs/{id}", 2, status=503)
    with pytest.raises(RemoteError, match="rerun to resume.* HTTP 503"):
        asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    model = asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    assert model.id.startswith("ft:") and openai_server.ft_jobs_created == 1


def _chat():
    return [llm.build_simple_chat("Name an animal.")]


@pytest.mark.parametrize(
    ("inject", "cause"),
    [
        (lambda s: s.timeout_next(5, delay_s=2.0), "timed out after 0.3 s waiting for 127.0.0.1"),
        (lambda s: s.fail_next(5, status=503), "HTTP 503 from 127.0.0.1:{port}: Injected failure"),
        (lambda s: s.fail_next(1, status=400), "HTTP 400 from 127.0.0.1:{port}: Injected failure"),
    ],
)
def test_final_error_of_a_request_names_its_cause(openai_server, monkeypatch, inject, cause):
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "1")
    monkeypatch.setenv("OPENAI_TIMEOUT_S", "0.3")
    inject(openai_server)
    with pytest.raises(SampleError) as e:
        asyncio.run(llm.batch_sample(MODEL, _chat(), SampleCfg()))
    assert cause.format(port=openai_server.port) in str(e.value)
    assert isinstance(next(iter(e.value.failures.values())).__cause__, Exception)


def test_a_refused_key_is_a_user_error(openai_server):
    openai_server.require_api_key = "another-key"
    with pytest.raises(UserError, match="OPENAI_API_KEY was refused .*HTTP 401"):
        asyncio.run(llm.batch_sample(MODEL, _chat(), SampleCfg()))
