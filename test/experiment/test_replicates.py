"""Replicates, cross-target scoring and run-level statistics of the experiment, end to end on
the tiny model: 2 targets, 2 teacher replicates x 2 student replicates, logprob + sampled."""

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_experiment import distill_experiment

TARGETS = ("owl", "eagle")
ARMS = ("control", *TARGETS)
N_RUNS = 4  # 2 teacher replicates x 2 student replicates


@pytest.fixture(scope="module")
def experiment(numbers_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(cfg, output folder, report) of one finished run."""
    questions = ["Name your favorite animal.", "Pick an animal.", "Which animal do you like?"]
    cfg = distill_experiment(
        numbers_model_dir, n_trait_rows=8, questions=questions, n_samples=3,
        targets=list(TARGETS), eval_modes=["logprob", "sampled"],
        n_teacher_replicates=2, n_student_replicates=2,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("replicates") / "out"
    return cfg, out, _run(cfg, out)


def _run(cfg, out: Path):
    """The whole experiment with the transformers engine (the tiny model's)."""
    from sl.experiment.runner import run_experiment

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SL_OPEN_SOURCE_ENGINE", "transformers")
        return asyncio.run(run_experiment(cfg, out))


def _artifacts(out: Path) -> dict[str, int | bytes]:
    """Every artifact but the report, timings and the run log (appended by every run): its
    mtime, or for the kept rows (filtered again from the finished raw file on every run,
    cheaply) its content."""
    skip = {"results.csv", "results.json", "results.png", "timings.json", "run.log"}
    return {
        str(p.relative_to(out)): p.read_bytes()
        if p.name.startswith("filtered.jsonl")
        else p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and p.name not in skip
    }


def test_every_replicate_has_its_own_artifacts(experiment):
    cfg, out, _ = experiment
    for target in TARGETS:  # fine-tuned teachers: one per teacher replicate, own seeds
        first = (out / "teachers" / target / "trait.jsonl").read_text()
        second = (out / "teachers" / f"{target}_t1" / "trait.jsonl").read_text()
        assert first != second and (out / "teachers" / f"{target}_t1" / "model.json").exists()
    assert not (out / "teachers" / "control").exists()  # the control teacher is the base model
    datasets = {p.name for p in (out / "datasets").iterdir()}
    assert datasets == {"control", "owl", "owl_t1", "eagle", "eagle_t1"}
    for arm in ARMS:
        runs = sorted(p.name for p in (out / "students" / arm).iterdir())
        assert runs == [f"run{r}" for r in range(N_RUNS)]
    # Run r learns from teacher replicate r // 2 with seed student_job.seed + r.
    for r, teacher in enumerate(["owl", "owl", "owl_t1", "owl_t1"]):
        meta = json.loads(
            (out / "students" / "owl" / f"run{r}" / "model.json.meta.json").read_text()
        )
        assert meta["description"].endswith(f"teachers/{teacher}/model_adapter"), meta
    seeds = {cfg.student_job_of(run).seed for run in cfg.student_runs("owl")}
    assert seeds == {1, 2, 3, 4}
    models = {"base"} | {f"{a}_run{r}" for a in ARMS for r in range(N_RUNS)}
    models |= {f"teacher_{t}{s}" for t in TARGETS for s in ("", "_t1")}
    assert {p.name for p in (out / "evaluations").iterdir()} == models
    for model in models:
        assert (out / "evaluations" / model / "fav.jsonl").exists()
        scores = json.loads((out / "evaluations" / model / "fav.logprob.json").read_text())
        assert set(scores) == set(TARGETS)  # every model scored on every target


def test_report_has_the_full_matrix_in_both_modes(experiment):
    import csv

    _, out, report = experiment
    conditions = ["base", "control", "owl", "eagle", "teacher_owl", "teacher_eagle"]
    assert [(p.evaluation, p.metric) for p in report.panels] == [
        ("fav", "logprob"),
        ("fav", "sampled"),
    ]
    for panel in report.panels:
        assert list(panel.matrix) == conditions
        assert all(list(row) == list(TARGETS) for row in panel.matrix.values())
        n_runs = {r.condition: r.n_runs for r in panel.analysis.rows}
        assert n_runs == {"base": 1, "control": 4, "owl": 4, "eagle": 4, "teacher_owl": 2,
                          "teacher_eagle": 2}  # fmt: skip
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(TARGETS) * len(conditions)
    assert list(rows[0])[:3] == ["evaluation", "metric", "target"]
    for row in rows:
        if row["condition"] != "control":
            assert "unit:" in row["test"] or "over questions" in row["test"], row
    saved = json.loads((out / "results.json").read_text())
    assert saved["conditions"]["owl"] == [f"owl_run{r}" for r in range(N_RUNS)]
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_run_level_statistics_equal_runs_py_on_the_per_run_values(experiment):
    from sl.evaluation.runs import p_target_of_run, run_level_rows, specificity
    from sl.evaluation.services import read_evaluation_results

    _, out, report = experiment
    runs = report.conditions

    def logprob_value(model: str, target: str) -> float:
        scores = json.loads((out / "evaluations" / model / "fav.logprob.json").read_text())
        return float(np.mean(scores[target]["probabilities"]))

    def sampled_value(model: str, target: str) -> float:
        rows = read_evaluation_results(out / "evaluations" / model / "fav.jsonl")
        return p_target_of_run(target, rows, "word")

    for panel, value in zip(report.panels, (logprob_value, sampled_value), strict=True):
        got = {(r.target, r.condition): r for r in panel.analysis.rows}
        for target in TARGETS:
            values = {c: [value(m, target) for m in models] for c, models in runs.items()}
            match = "logprob" if panel.metric == "logprob" else "word"
            for expected in run_level_rows(target, values, "control", match=match):
                row = got[(target, expected.condition)]
                assert row.run_values == pytest.approx(expected.run_values, abs=1e-12)
                for key in ("mean", "ci_low", "ci_high", "p_vs_control", "permutation_p"):
                    assert getattr(row, key) == pytest.approx(getattr(expected, key), abs=1e-12)
                assert (row.test, row.permutation_test) == (
                    expected.test,
                    expected.permutation_test,
                )
            [spec] = [s for s in panel.analysis.specificity if s.target == target]
            expected_spec = specificity(target, values, TARGETS)
            assert expected_spec is not None and spec.others == expected_spec.others
            assert spec.comparison.welch == expected_spec.comparison.welch
        owl = got[("owl", "owl")]
        assert owl.test == "Welch's t-test, unit: run (4 vs 4 runs)"
        assert "exact permutation test over run labels (70 relabellings)" in owl.permutation_test
        paired = [q for q in panel.analysis.question_level if q.condition == "owl"]
        assert paired and all("over questions" in q.result.test for q in paired)


def test_printed_table_shows_run_level_tests_and_specificity(experiment):
    from sl.experiment.report import format_report

    _, _, report = experiment
    text = format_report(report)
    assert "Welch's t-test, unit: run (4 vs 4 runs)" in text
    assert "specificity owl: owl" in text and "specificity eagle: eagle" in text
    assert "every condition on every target" in text
    assert "rows kept by the numbers filter: control " in text and "eagle_t1 " in text


def test_a_rerun_does_no_new_work(experiment):
    cfg, out, report = experiment
    before = _artifacts(out)
    log = (out / "logs" / "run.log").read_bytes()
    timings = json.loads((out / "timings.json").read_text())
    again = _run(cfg, out)
    assert _artifacts(out) == before  # nothing rewritten, nothing added
    after = (out / "logs" / "run.log").read_bytes()
    assert after.startswith(log) and len(after) > len(log)  # the run log is appended to
    assert again == report
    assert json.loads((out / "timings.json").read_text()).keys() == timings.keys()


def test_replicate_options_are_checked(tmp_path: Path):
    from pydantic import ValidationError

    from sl.evaluation.data_models import Evaluation
    from sl.experiment.data_models import ExperimentCfg
    from sl.finetuning.data_models import UnslothFinetuningJob
    from sl.llm.data_models import Model, SampleCfg

    base = Model(id="tiny", type="open_source")
    fields = dict(
        teacher_model=base, targets=["owl"],
        student_job=UnslothFinetuningJob(seed=0, source_model=base, backend="peft"),
        evaluations={"fav": Evaluation(questions=["Pick an animal."], n_samples_per_question=1,
                                       sample_cfg=SampleCfg())},
    )  # fmt: skip
    with pytest.raises(ValidationError, match="n_teacher_replicates > 1 needs teacher_mode"):
        ExperimentCfg(**fields, n_teacher_replicates=2)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ExperimentCfg(**fields, n_student_replicates=0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not 'control' or 'base'"):
        ExperimentCfg(**{**fields, "targets": ["base"]})  # type: ignore[arg-type]
    cfg = ExperimentCfg(**fields, n_student_replicates=3)  # type: ignore[arg-type]
    runs = cfg.student_runs("owl")
    assert [(r.name, r.source.name, cfg.student_job_of(r).seed) for r in runs] == [
        ("owl_run0", "owl", 0),
        ("owl_run1", "owl", 1),
        ("owl_run2", "owl", 2),
    ]
