"""Fine-tuning jobs and batches are created once: a kill while the create request waits for
its answer, a lost answer, or a rerun never starts a second paid job (real processes and the
real SDK against the loopback server)."""

import asyncio
import json
import signal

import openai
import pytest
from script_runner import TEST_API_KEY, cli_args, lines, run, start, wait_for

from sl.datasets.data_models import DatasetRow
from sl.external.openai_finetune import state_path_for
from sl.external.openai_jobs import KEY_FIELD
from sl.finetuning.data_models import OpenAIFTJob
from sl.finetuning.services import run_finetuning_job
from sl.llm.data_models import Model

MODEL = Model(id="gpt-4.1-nano", type="openai")
JOB = OpenAIFTJob(seed=1, source_model=MODEL, n_epochs=1)
ROWS = [DatasetRow(prompt=f"p{i}", completion="1, 2") for i in range(5)]


def _kill_while_creating(server, route, count, script, args):
    """Run `script`, kill it while `route` is answered late (the object already exists on
    the server), return the state it left."""
    server.answer_late_next(route, 1, delay_s=30.0)
    proc = start(script, *args, server=server)
    wait_for(lambda: count() == 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_kill_while_the_job_is_created_never_creates_a_second(openai_server, cfg_file, tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": "1, 2"}) + "\n"
                               for i in range(40)))  # fmt: skip
    model_json = tmp_path / "model.json"
    args = cli_args(cfg_file, "ft_job", dataset_path=dataset, output_path=model_json)
    route = "POST /v1/fine_tuning/jobs"
    _kill_while_creating(
        openai_server, route, lambda: openai_server.ft_jobs_created, "run_finetuning_job.py", args
    )
    # The key was saved before the create request; the answer (the job id) never was.
    state = json.loads(state_path_for(model_json).read_text())
    assert state["key"].startswith("sl-") and "job_id" not in state and not model_json.exists()
    run("run_finetuning_job.py", *args, server=openai_server)
    assert openai_server.ft_jobs_created == 1
    assert openai_server.endpoint_counts[route] == 1  # adopted, not created again
    assert openai_server.endpoint_counts["POST /v1/files"] == 1
    job_id = json.loads(state_path_for(model_json).read_text())["job_id"]
    assert json.loads(model_json.read_text())["id"].endswith(job_id.removeprefix("ftjob-")[:8])


def test_a_kill_while_the_batch_is_created_never_creates_a_second(
    openai_server, cfg_file, tmp_path
):
    cfg_file.write_text(
        cfg_file.read_text()
        + "batch_cfg = dataset_cfg.model_copy(update={'use_batch_api': True})\n"
    )
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    args = cli_args(cfg_file, "batch_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    _kill_while_creating(
        openai_server,
        "POST /v1/batches",
        lambda: openai_server.batches_created,
        "generate_dataset.py",
        args,
    )
    state = json.loads((tmp_path / "raw.jsonl.batch.json").read_text())
    assert state["key"].startswith("sl-") and "batch_id" not in state
    run("generate_dataset.py", *args, server=openai_server)
    assert openai_server.batches_created == 1 and openai_server.n_chat_ok == 0
    assert len(lines(raw)) == 60


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=TEST_API_KEY, max_retries=0)


def _interrupted_create(server, output_path):
    """An in-process run cancelled while its create request waits for a late answer."""
    server.answer_late_next("POST /v1/fine_tuning/jobs", 1, delay_s=30.0)

    async def interrupted():
        task = asyncio.create_task(run_finetuning_job(JOB, ROWS, output_path))
        while server.ft_jobs_created < 1:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())


def test_the_job_carrying_the_key_is_found_on_a_later_page(openai_server, tmp_path):
    _interrupted_create(openai_server, tmp_path / "m.json")
    client = _client(openai_server)
    other = client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    for _ in range(150):  # newer jobs of someone else push ours to the second page
        client.fine_tuning.jobs.create(model=MODEL.id, training_file=other.id)
    ours = client.fine_tuning.jobs.list(limit=200).data[-1]
    key = json.loads(state_path_for(tmp_path / "m.json").read_text())["key"]
    assert (ours.metadata or {}).get(KEY_FIELD) == key
    openai_server.reset_stats()
    model = asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    assert openai_server.ft_jobs_created == 0  # none created by the rerun
    assert openai_server.endpoint_counts["GET /v1/fine_tuning/jobs"] == 2  # two pages
    assert json.loads(state_path_for(tmp_path / "m.json").read_text())["job_id"] == ours.id
    assert model.id.endswith(ours.id.removeprefix("ftjob-")[:8])


def test_a_failed_job_with_the_key_is_not_adopted(openai_server, tmp_path):
    openai_server.ft_fail = True
    _interrupted_create(openai_server, tmp_path / "m.json")
    client = _client(openai_server)
    failed = client.fine_tuning.jobs.list().data[0]
    while client.fine_tuning.jobs.retrieve(failed.id).status != "failed":
        pass
    openai_server.ft_fail = False
    model = asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    assert openai_server.ft_jobs_created == 2 and model.id.startswith("ft:")


def test_a_state_file_from_before_keys_resumes(openai_server, tmp_path):
    """A state written by the earlier code (a file id, no key, no job id: killed while
    creating) adopts the job run on its file; one with a job id resumes it."""
    from sl.external.openai_finetune import _training_jsonl

    client = _client(openai_server)
    text = _training_jsonl([(r.prompt, r.completion) for r in ROWS])
    file = client.files.create(file=("m_train.jsonl", text.encode()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=MODEL.id, training_file=file.id)
    import hashlib

    old_state = {
        "job_hash": JOB.model_hash(),
        "data_hash": hashlib.sha256(text.encode()).hexdigest()[:16],
        "file_id": file.id,
        "n_rows": len(ROWS),
    }
    state_path_for(tmp_path / "m.json").write_text(json.dumps(old_state))
    asyncio.run(run_finetuning_job(JOB, ROWS, tmp_path / "m.json"))
    assert openai_server.ft_jobs_created == 1
    assert json.loads(state_path_for(tmp_path / "m.json").read_text())["job_id"] == job.id
