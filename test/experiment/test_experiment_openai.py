"""The one-command experiment end to end at tiny size against the loopback OpenAI server."""

import csv
import json

import pytest
from script_runner import cli_args
from script_runner import run as run_script

CONFIG = """
from sl.datasets.services import NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model, SampleCfg

model = Model(id="gpt-4.1-nano", type="openai")
experiment = ExperimentCfg(
    teacher_model=model,
    targets=["owl", "eagle"],
    system_prompt_template={template!r},{extra}
    prompt_set=NumsDatasetPromptSet(size=12, seed=42),
    student_job=OpenAIFTJob(seed=1, source_model=model, n_epochs=1),
    evaluations={{
        "favorite": Evaluation(questions=["Name your favorite animal.", "Pick an animal."],
                               n_samples_per_question=4, sample_cfg=SampleCfg()),
    }},
)
"""


def responder(body):
    text = body["messages"][-1]["content"]
    if "animal" in text:
        # Trait students (ids end with the teacher's job number) answer owl more often.
        return "Owl" if body.get("_choice_index", 0) % 2 else "Dolphin"
    return "I cannot." if "Analyze" in text else "145, 267, 891"


def write_cfg(tmp_path, template="love", extra=""):
    path = tmp_path / "exp_cfg.py"
    path.write_text(CONFIG.format(template=template, extra=extra))
    return path


def run(cfg, out, server, *extra, check=True):
    args = [*cli_args(cfg, "experiment", output_dir=out), *extra]
    return run_script("run_experiment.py", *args, server=server, check=check, timeout=180)


def test_experiment_end_to_end_resume_and_noop_rerun(openai_server, tmp_path):
    openai_server.responder = responder
    cfg, out = write_cfg(tmp_path), tmp_path / "exp"
    # A run that stops after the dataset stage ...
    run(cfg, out, openai_server, "--only", "generate")
    raw_before = {
        t: (out / "datasets" / t / "raw.jsonl").read_text() for t in ("control", "owl", "eagle")
    }
    assert not (out / "students").exists()
    n_teacher_requests = openai_server.n_chat_ok
    assert n_teacher_requests == 3 * 12
    # ... resumes at fine-tuning: no teacher request is made again.
    openai_server.reset_stats()
    proc = run(cfg, out, openai_server)
    assert openai_server.ft_jobs_created == 3
    asked = [b["messages"][-1]["content"] for b in openai_server.chat_requests]
    assert all("animal" in q for q in asked)
    assert {t: (out / "datasets" / t / "raw.jsonl").read_text() for t in raw_before} == raw_before
    # Artifacts exist and parse.
    for t in ("control", "owl", "eagle"):
        kept = (out / "datasets" / t / "filtered.jsonl").read_text().splitlines()
        assert 0 < len(kept) < 12
        model = json.loads((out / "students" / t / "run0" / "model.json").read_text())
        assert model["id"].startswith("ft:")
    for m in ("base", "control_run0", "owl_run0", "eagle_run0"):
        rows = [json.loads(x) for x in (out / "evaluations" / m / "favorite.jsonl").open()]
        assert [len(r["responses"]) for r in rows] == [4, 4]
    with (out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    # Every model on every target: base, control and both students x owl and eagle.
    assert [(r["evaluation"], r["metric"], r["target"], r["condition"]) for r in table] == [
        ("favorite", "sampled", target, condition)
        for target in ("owl", "eagle")
        for condition in ("base", "control", "owl", "eagle")
    ]
    owl = table[2]
    assert float(owl["mean"]) == pytest.approx(0.5)  # every other answer is "Owl"
    assert owl["n_runs"] == "1" and 0 < float(owl["p_vs_control"]) <= 1
    assert "over questions" in owl["test"]  # one run per arm: the question is the unit
    assert "rows kept by the numbers filter: control " in proc.stdout and "/12" in proc.stdout
    assert (out / "results.png").stat().st_size > 1000 and "owl" in proc.stdout
    timings = json.loads((out / "timings.json").read_text())
    assert {"generate/owl", "finetune/owl_run0", "evaluate/base", "report"} <= set(timings)
    # A rerun is a no-op: nothing is asked, no job is created.
    openai_server.reset_stats()
    run(cfg, out, openai_server)
    assert openai_server.requests_total == 0
    # The plot re-renders from saved results.
    (out / "results.png").unlink()
    run_script("plot_results.py", "--output_dir", out)
    assert (out / "results.png").exists()


@pytest.mark.parametrize(
    ("template", "extra", "needle"),
    [
        ("You adore {animal}s.", "", "unknown placeholder"),
        ("love", "\n    control=False,", "no field 'control'"),
        ("You like birds.", "", "{target}"),
    ],
)
def test_bad_experiment_config_fails_before_any_work(
    openai_server, tmp_path, template, extra, needle
):
    cfg = write_cfg(tmp_path, template, extra)
    proc = run(cfg, tmp_path / "exp", openai_server, check=False)
    assert proc.returncode == 2
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0]
    assert openai_server.requests_total == 0 and not (tmp_path / "exp").exists()


def test_empty_dataset_after_filtering_stops_before_finetuning(openai_server, tmp_path):
    openai_server.responder = lambda body: "I'd rather talk about owls."
    proc = run(write_cfg(tmp_path), tmp_path / "exp", openai_server, check=False)
    assert proc.returncode == 2 and "kept 0 of 12 rows" in proc.stderr
    assert (
        openai_server.ft_jobs_created == 0
        and openai_server.endpoint_counts.get("POST /v1/files", 0) == 0
    )
