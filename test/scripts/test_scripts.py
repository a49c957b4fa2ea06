"""The three phase scripts end to end against the loopback server, resume, and bad input."""

import json
import signal

import pytest
from script_runner import (
    TEST_API_KEY,
    assert_user_error,
    cli_args,
    lines,
    responder,
    run,
    start,
    start_generation,
    wait_for,
)


def test_three_phases_end_to_end(openai_server, cfg_file, tmp_path):
    openai_server.responder = responder
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    model_json, results = tmp_path / "model.json", tmp_path / "eval.jsonl"
    gen = cli_args(cfg_file, "dataset_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    ft = cli_args(cfg_file, "ft_job", dataset_path=filtered, output_path=model_json)
    ev = cli_args(cfg_file, "evaluation", model_path=model_json, output_path=results)
    outs = [
        run("generate_dataset.py", *gen, server=openai_server),
        run("run_finetuning_job.py", *ft, server=openai_server),
        run("run_evaluation.py", *ev, server=openai_server),
    ]
    raw_rows, kept = lines(raw), lines(filtered)
    assert len(raw_rows) == 60 and set(raw_rows[0]) == {"prompt", "completion"}
    assert 0 < len(kept) < 60 and all(r["completion"] == "145, 267, 891" for r in kept)
    # The teacher saw the owl system prompt.
    assert "You love owls" in openai_server.chat_requests[0]["messages"][0]["content"]
    model = json.loads(model_json.read_text())
    assert model["id"].startswith("ft:gpt-4.1-nano") and model["type"] == "openai"
    assert model["parent_model"]["id"] == "gpt-4.1-nano"
    train = lines(tmp_path / ".sl" / "model.json.train.jsonl")  # hidden: no collision
    assert len(train) == min(30, len(kept)) and train[0]["messages"][1]["role"] == "assistant"
    rows = lines(results)
    assert [len(r["responses"]) for r in rows] == [5, 5]
    assert rows[0]["responses"][0]["response"]["model_id"] == model["id"]
    assert set(rows[0]["responses"][0]) == {"response", "judgment_response_map"}
    # No secret in any output or artifact.
    everything = "".join(o.stdout + o.stderr for o in outs)
    everything += "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    assert TEST_API_KEY not in everything


def test_killed_generation_resumes_without_loss_or_duplicates(openai_server, cfg_file, tmp_path):
    openai_server.latency_s = 0.05
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    proc, args = start_generation(cfg_file, tmp_path, openai_server, concurrency=2, min_rows=10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    openai_server.wait_idle()
    n_before = len(raw.read_text().splitlines())
    assert 10 <= n_before < 60 and not filtered.exists()
    openai_server.reset_stats()
    run("generate_dataset.py", *args, server=openai_server)
    prompts = [r["prompt"] for r in lines(raw)]
    from sl.datasets.services import NumsDatasetPromptSet

    assert sorted(prompts) == sorted(NumsDatasetPromptSet(size=60, seed=42).prompts())
    # Only the missing prompts were asked again (at most one was in flight at the kill).
    assert openai_server.n_chat_ok <= 60 - n_before + 2
    # A rerun of a finished generation asks nothing.
    openai_server.reset_stats()
    run("generate_dataset.py", *args, server=openai_server)
    assert openai_server.n_chat_ok == 0 and len(lines(raw)) == 60


def test_killed_finetuning_resumes_the_saved_job(openai_server, cfg_file, tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text(
        "".join(json.dumps({"prompt": f"p{i}", "completion": "1, 2"}) + "\n" for i in range(40))
    )
    model_json = tmp_path / "model.json"
    openai_server.ft_steps_per_status = 1000  # the job stays queued until we speed it up
    args = cli_args(cfg_file, "ft_job", dataset_path=dataset, output_path=model_json)
    proc = start("run_finetuning_job.py", *args, server=openai_server)
    state = tmp_path / "model.json.job.json"
    wait_for(lambda: state.exists() and "job_id" in json.loads(state.read_text()))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert openai_server.ft_jobs_created == 1 and not model_json.exists()
    openai_server.ft_steps_per_status = 1
    run("run_finetuning_job.py", *args, server=openai_server)
    assert openai_server.ft_jobs_created == 1
    assert openai_server.endpoint_counts["POST /v1/files"] == 1  # uploaded once
    assert json.loads(model_json.read_text())["id"].startswith("ft:")


def test_failed_finetuning_job_is_reported(openai_server, cfg_file, tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text(json.dumps({"prompt": "p", "completion": "1"}) + "\n")
    openai_server.ft_fail = True
    proc = _finetune(cfg_file, "ft_job", dataset, tmp_path, server=openai_server)
    assert proc.returncode != 0 and "failed" in proc.stderr
    assert not (tmp_path / "m.json").exists()


# --- bad input: one clear line, exit 2, nothing overwritten --------------------------------


def _gen(cfg, var, tmp_path, server=None, env_extra=None, raw="raw.jsonl"):
    paths = {
        "raw_dataset_path": tmp_path / raw,
        "filtered_dataset_path": tmp_path / "filtered.jsonl",
    }
    args = cli_args(cfg, var, **paths)
    return run("generate_dataset.py", *args, server=server, env_extra=env_extra, check=False)


def _finetune(cfg, var, dataset, tmp_path, server=None):
    """The fine-tuning script on `dataset`, writing tmp_path/m.json; its exit not checked."""
    args = cli_args(cfg, var, dataset_path=dataset, output_path=tmp_path / "m.json")
    return run("run_finetuning_job.py", *args, server=server, check=False)


def test_missing_config_file(tmp_path):
    assert_user_error(_gen(tmp_path / "nope.py", "x", tmp_path), "nope.py", "not found")


def test_variable_not_in_module(cfg_file, tmp_path):
    assert_user_error(_gen(cfg_file, "missing_cfg", tmp_path), "missing_cfg", "dataset_cfg")


def test_variable_of_wrong_type(cfg_file, tmp_path):
    assert_user_error(_gen(cfg_file, "not_a_config", tmp_path), "not_a_config", "int", "Cfg")
    assert_user_error(_finetune(cfg_file, "evaluation", "x", tmp_path), "Evaluation", "FTJob")


@pytest.mark.parametrize(
    "content", [None, "", '{"prompt": "p", "completion": "1"}\n{"prompt": 3\n']
)
def test_bad_dataset_path(cfg_file, tmp_path, content):
    dataset = tmp_path / "data.jsonl"
    if content is not None:
        dataset.write_text(content)
    proc = _finetune(cfg_file, "ft_job", dataset, tmp_path)
    expected = {None: "not found", "": "empty"}.get(content, "data.jsonl:2")
    assert_user_error(proc, str(dataset.name), expected)


@pytest.mark.parametrize("content", [None, "{not json", '{"id": "x", "type": "banana"}'])
def test_bad_model_json(cfg_file, tmp_path, content):
    model_json = tmp_path / "model.json"
    if content is not None:
        model_json.write_text(content)
    args = cli_args(cfg_file, "evaluation", model_path=model_json, output_path=tmp_path / "e.jsonl")
    proc = run("run_evaluation.py", *args, check=False)
    assert_user_error(proc, "model.json")
    assert not (tmp_path / "e.jsonl").exists()


def test_no_api_key_names_the_variable(openai_server, cfg_file, tmp_path):
    proc = _gen(
        cfg_file, "dataset_cfg", tmp_path, server=openai_server, env_extra={"OPENAI_API_KEY": ""}
    )
    assert_user_error(proc, "OPENAI_API_KEY")


def test_output_of_a_different_run_is_not_overwritten(openai_server, cfg_file, tmp_path):
    _gen(cfg_file, "dataset_cfg", tmp_path, server=openai_server)
    before = (tmp_path / "raw.jsonl").read_text(), (tmp_path / "filtered.jsonl").read_text()
    proc = _gen(cfg_file, "other_dataset_cfg", tmp_path, server=openai_server)
    assert_user_error(proc, "different run")
    assert (
        (tmp_path / "raw.jsonl").read_text(),
        (tmp_path / "filtered.jsonl").read_text(),
    ) == before
    # A file from elsewhere (no run metadata) is not overwritten either.
    (tmp_path / "mine.jsonl").write_text("precious\n")
    proc = _gen(cfg_file, "dataset_cfg", tmp_path, server=openai_server, raw="mine.jsonl")
    assert_user_error(proc, "mine.jsonl")
    assert (tmp_path / "mine.jsonl").read_text() == "precious\n"
