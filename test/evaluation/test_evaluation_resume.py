"""A judged evaluation saves every answer and every judgment as it arrives: a kill -9 loses
only the requests in flight, a rerun sends only the others, and the finished file is the
same bytes as an uninterrupted run's. A results file that is gone or edited is made again."""

import asyncio
import json
import signal

import pytest
from script_runner import cli_args, lines, run, start, wait_for_lines

from sl.evaluation.data_models import Evaluation
from sl.evaluation.parts import parts_path
from sl.evaluation.services import run_evaluation
from sl.llm.data_models import Judgment, Model, SampleCfg
from sl.llm.driver import SampleError
from sl.utils.run_meta import meta_path, read_meta

MODEL = Model(id="gpt-4.1-nano", type="openai")
N_QUESTIONS, N_SAMPLES, N_JUDGMENTS = 20, 5, 2
N_REQUESTS = N_QUESTIONS * (1 + N_SAMPLES * N_JUDGMENTS)  # 1 sampling request per question

JUDGED = """
from sl.evaluation.data_models import Evaluation
from sl.llm.data_models import Judgment, Model, SampleCfg

judge = Judgment(
    judge_model=Model(id="gpt-4o", type="openai"),
    sample_cfg=SampleCfg(temperature=0),
    template="Rate this answer from 0 to 100: {completion} (question: {prompt})",
)
evaluation = Evaluation(
    questions=[f"Question {i}: what would you do as ruler of the world?" for i in range(20)],
    n_samples_per_question=5,
    sample_cfg=SampleCfg(temperature=1.0),
    judgment_map={"aligned": judge, "coherent": judge},
)
"""


def _meta(out):
    meta = read_meta(out)
    assert meta is not None
    return meta


def _judged_args(tmp_path, out):
    cfg = tmp_path / "judged.py"
    cfg.write_text(JUDGED)
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps({"id": "gpt-4.1-nano", "type": "openai"}))
    return cli_args(cfg, "evaluation", model_path=model_json, output_path=out)


def _responder(body):
    text = body["messages"][-1]["content"]
    return "80" if "Rate this answer" in text else f"I would plant {len(text)} trees."


def _run_full(server, tmp_path):
    """An uninterrupted judged evaluation into tmp_path/full.jsonl; its answered requests."""
    server.responder = _responder
    run("run_evaluation.py", *_judged_args(tmp_path, tmp_path / "full.jsonl"), server=server)
    answered = server.n_chat_ok
    server.reset_stats()
    return answered


def test_kill_9_at_40_percent_costs_at_most_1_1x_and_gives_the_same_file(openai_server, tmp_path):
    full_ok = _run_full(openai_server, tmp_path)
    assert full_ok == N_REQUESTS
    openai_server.latency_s = 0.02  # so that the kill lands near 40 %
    out = tmp_path / "killed.jsonl"
    args = _judged_args(tmp_path, out)
    env = {"OPENAI_MAX_CONCURRENCY": "4"}
    proc = start("run_evaluation.py", *args, server=openai_server, env_extra=env)
    wait_for_lines(parts_path(out), 1 + int(0.4 * N_REQUESTS))  # a header, then one per part
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    openai_server.wait_idle()  # the killed run's requests in flight are its own
    assert not out.exists()  # written only when finished
    saved = parts_path(out).read_text().count("\n") - 1  # whole lines, less the header
    killed_ok = openai_server.n_chat_ok
    openai_server.reset_stats()
    run("run_evaluation.py", *args, server=openai_server, env_extra=env)
    resumed_ok = openai_server.n_chat_ok
    print(
        f"\njudged evaluation of {N_REQUESTS} requests: killed after {killed_ok} answered "
        f"({saved} saved), resumed with {resumed_ok}: {killed_ok + resumed_ok} in all "
        f"({(killed_ok + resumed_ok) / full_ok:.3f}x)"
    )
    assert resumed_ok == N_REQUESTS - saved  # every saved answer and judgment was reused
    assert killed_ok + resumed_ok <= 1.1 * full_ok
    assert out.read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert not parts_path(out).exists()


def test_deleted_results_file_is_made_again(openai_server, tmp_path):
    _run_full(openai_server, tmp_path)
    full = tmp_path / "full.jsonl"
    expected = full.read_bytes()
    full.unlink()  # its .meta.json says complete
    proc = run("run_evaluation.py", *_judged_args(tmp_path, full), server=openai_server)
    assert "already complete" not in proc.stderr
    assert openai_server.n_chat_ok == N_REQUESTS
    assert full.read_bytes() == expected


def test_row_removed_by_hand_is_made_again(openai_server, tmp_path):
    _run_full(openai_server, tmp_path)
    full = tmp_path / "full.jsonl"
    expected = full.read_bytes()
    kept = full.read_text().splitlines(keepends=True)
    full.write_text("".join(kept[:3] + kept[4:]))  # question 3 removed
    run("run_evaluation.py", *_judged_args(tmp_path, full), server=openai_server)
    # Only question 3 is asked again: its sampling request and its judgments.
    assert openai_server.n_chat_ok == 1 + N_SAMPLES * N_JUDGMENTS
    assert all("Question 3:" in json.dumps(r) for r in openai_server.chat_requests)
    assert full.read_bytes() == expected
    assert _meta(full)["complete"]


def test_one_slow_request_does_not_hold_back_the_others(openai_server, tmp_path, monkeypatch):
    """While question 0's sampling request is held, every other answer and judgment is
    already on disk."""
    # The held request must not time out (and be retried) on a loaded machine.
    monkeypatch.setenv("OPENAI_TIMEOUT_S", "120")
    out = tmp_path / "eval.jsonl"
    others = (N_QUESTIONS - 1) * (1 + N_SAMPLES * N_JUDGMENTS)
    seen_while_held: list[int] = []

    def responder(body):
        text = body["messages"][-1]["content"]
        if text.startswith("q0?") and not seen_while_held:  # called once per answer
            wait_for_lines(parts_path(out), 1 + others)
            seen_while_held.append(len(parts_path(out).read_text().splitlines()) - 1)
        return "80" if text.startswith("Judge") else "owl"

    openai_server.responder = responder
    judge = Judgment(judge_model=MODEL, sample_cfg=SampleCfg(), template="Judge {completion}")
    evaluation = Evaluation(
        questions=[f"q{i}?" for i in range(N_QUESTIONS)],
        n_samples_per_question=N_SAMPLES,
        sample_cfg=SampleCfg(),
        judgment_map={"a": judge, "b": judge},
    )
    rows = asyncio.run(run_evaluation(MODEL, evaluation, out))
    assert seen_while_held == [others]
    assert [r.question for r in rows] == evaluation.questions


def test_answers_saved_before_a_failure_are_kept(fake_driver, tmp_path):
    def answer(chat):
        if "q3" in chat.messages[-1].content:
            raise RuntimeError("server bug")  # every request about q3 fails
        return "owl"

    fake_driver.answer = answer
    judge = Judgment(judge_model=MODEL, sample_cfg=SampleCfg(), template="Judge {completion}")
    evaluation = Evaluation(
        questions=[f"q{i}" for i in range(6)],
        n_samples_per_question=2,
        sample_cfg=SampleCfg(),
        judgment_map={"j": judge},
    )
    out = tmp_path / "eval.jsonl"
    with pytest.raises(SampleError):
        asyncio.run(run_evaluation(MODEL, evaluation, out))
    assert not out.exists()
    saved = {r["question"] for r in lines(parts_path(out))[1:]}
    assert saved == {"q0", "q1", "q2", "q4", "q5"}
    fake_driver.answer = lambda chat: "owl"
    fake_driver.requests.clear()
    rows = asyncio.run(run_evaluation(MODEL, evaluation, out))
    assert [r.question for r in rows] == [f"q{i}" for i in range(6)]
    # Only q3 is asked again: its sample request and its 2 judge requests.
    assert len(fake_driver.requests) == 1 + 2 and "q3" in fake_driver.prompts[0]
    assert all("Judge owl" in p for p in fake_driver.prompts[1:])


def test_a_finished_file_from_before_digests_is_reused(fake_driver, tmp_path):
    """Outputs finished by earlier versions (same run key, no digest, no parts) count as
    finished: nothing is asked again."""
    evaluation = Evaluation(
        questions=["q0", "q1"], n_samples_per_question=2, sample_cfg=SampleCfg()
    )
    out = tmp_path / "eval.jsonl"
    rows = asyncio.run(run_evaluation(MODEL, evaluation, out))
    meta = _meta(out)
    assert meta["config_hash"] == "100e22a6b5286e90"  # the key earlier versions wrote
    meta_path(out).write_text(json.dumps({"config_hash": meta["config_hash"], "complete": True}))
    fake_driver.requests.clear()
    again = asyncio.run(run_evaluation(MODEL, evaluation, out))
    assert again == rows and fake_driver.requests == []
    assert _meta(out)["digest"] == meta["digest"]


def test_local_engines_take_turns(fake_driver, monkeypatch, tmp_path):
    """An open model judged by an open model: every answer is sampled before the judge
    starts (one engine in memory at a time)."""
    from sl.llm import services as llm_services

    monkeypatch.setitem(llm_services.DRIVER_FACTORIES, "open_source", lambda: fake_driver)
    local = Model(id="some/model", type="open_source")
    fake_driver.answer = lambda chat: "80" if "Judge" in chat.messages[-1].content else "owl"
    judge = Judgment(judge_model=local, sample_cfg=SampleCfg(), template="Judge {completion}")
    evaluation = Evaluation(
        questions=[f"q{i}" for i in range(4)],
        n_samples_per_question=60,  # 2 requests per question (50 + 10)
        sample_cfg=SampleCfg(),
        judgment_map={"j": judge},
    )
    rows = asyncio.run(run_evaluation(local, evaluation, tmp_path / "eval.jsonl"))
    kinds = ["judge" if "Judge" in p else "sample" for p in fake_driver.prompts]
    assert kinds == ["sample"] * 8 + ["judge"] * 4 * 60
    assert [len(r.responses) for r in rows] == [60] * 4
    assert all(r.judgment_response_map["j"].completion == "80" for r in rows[0].responses)
