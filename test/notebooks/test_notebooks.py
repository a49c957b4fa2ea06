"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel (nbclient +
ipykernel, this venv's python) and do what they say; the notebooks in git carry no outputs.

Each execution prints its wall time and the kernel's CPU time (`pytest -s` shows them)."""

import json
import resource
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from sl.evaluation.analysis import (
    analyze_result_files,
    analyze_scores,
    format_analysis,
    results_csv,
)
from sl.evaluation.logprob import LogprobResult, read_logprob_scores
from sl.evaluation.services import read_evaluation_results
from sl.llm.data_models import Model

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
FIXTURES = ROOT / "test/fixtures/multi_animal"
QUICKSTART_CPU_BUDGET_S = 180  # the CI budget: under 3 minutes on 2 cores


def execute(nb: nbformat.NotebookNode, timeout: int = 120) -> tuple[float, float]:
    """Run every cell in a fresh python3 kernel started in notebooks/; (wall s, kernel CPU s)."""
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, reaped at shutdown
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu


def run_notebook(name: str, timeout: int = 120) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    wall, cpu = execute(nb, timeout)
    print(f"\n{name}: {wall:.1f} s wall, kernel CPU {cpu:.1f} s")
    return nb, cpu


def text_output(nb: nbformat.NotebookNode) -> str:
    """Everything the cells printed or showed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def n_images(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


def test_the_kernel_is_this_venvs_python():
    nb = new_notebook(cells=[new_code_cell("import sys; print(sys.executable)")])
    execute(nb)
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable


def test_notebooks_in_git_have_no_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {p.name for p in paths} >= {"analyze_results.ipynb", "quickstart.ipynb"}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name} cell {i} has outputs: clear all outputs, then save"
                )


def fixture_conditions() -> dict[str, list[Path]]:
    return {
        c: sorted(FIXTURES.glob(f"{c}_run*.jsonl"))
        for c in ("control", "default", "dolphin", "eagle")
    }


def test_analyze_notebook_reproduces_the_librarys_analysis_of_the_fixtures(tmp_path, monkeypatch):
    monkeypatch.delenv("SL_NOTEBOOK_INPUT", raising=False)
    monkeypatch.delenv("SL_NOTEBOOK_MATCH", raising=False)
    monkeypatch.setenv("SL_NOTEBOOK_OUTPUT", str(tmp_path / "out"))
    nb, _ = run_notebook("analyze_results.ipynb")

    expected = analyze_result_files(
        fixture_conditions(), ["dolphin", "eagle"], base="default", match="exact"
    )
    assert (tmp_path / "out/results.csv").read_text() == results_csv(expected.rows)
    text = text_output(nb)
    assert "base: default | control: control | targets: ['dolphin', 'eagle']" in text
    assert format_analysis(expected) in text
    # The original notebook's published numbers (README): eagle control 13.41 %, student 77.90 %.
    rows = {(r.target, r.condition): r for r in expected.rows}
    assert round(100 * rows["eagle", "control"].mean, 2) == 13.41
    assert round(100 * rows["eagle", "eagle"].mean, 2) == 77.90
    assert n_images(nb) == 1  # the figure; no exact P(target) in these files
    assert "no .logprob.json" in text


def make_main_job_folder(root: Path) -> dict[str, list[Path]]:
    """A main-job-shaped folder from the fixtures: evaluations/<model>/favorite_animal.jsonl
    (models base, <arm>_run<r>) with a .logprob.json beside each; condition -> its files."""
    names = {"default": "base", "control": "control", "dolphin": "dolphin", "eagle": "eagle"}
    conditions: dict[str, list[Path]] = {}
    for k, (source, name) in enumerate(names.items()):
        files = fixture_conditions()[source][: 1 if name == "base" else None]
        for r, src in enumerate(files):
            model = name if name == "base" else f"{name}_run{r}"
            dst = root / "evaluations" / model / "favorite_animal.jsonl"
            dst.parent.mkdir(parents=True)
            shutil.copy(src, dst)
            questions = [row.question for row in read_evaluation_results(dst)]
            logprob = {
                t: LogprobResult(
                    model_id=model,
                    target=t,
                    questions=questions,
                    probabilities=[
                        1e-4 * (1 + k + r + i % 3 + 5 * (t == name)) for i in range(len(questions))
                    ],
                ).model_dump()
                for t in ("dolphin", "eagle")
            }
            dst.with_name("favorite_animal.logprob.json").write_text(json.dumps(logprob))
            conditions.setdefault(name, []).append(dst)
    return conditions


def test_analyze_notebook_reads_a_main_job_folder(tmp_path, monkeypatch):
    conditions = make_main_job_folder(tmp_path / "job")
    monkeypatch.setenv("SL_NOTEBOOK_INPUT", str(tmp_path / "job"))
    monkeypatch.setenv("SL_NOTEBOOK_MATCH", "word")
    monkeypatch.setenv("SL_NOTEBOOK_OUTPUT", str(tmp_path / "out"))
    nb, _ = run_notebook("analyze_results.ipynb")

    targets = ["dolphin", "eagle"]
    expected = analyze_result_files(conditions, targets, base="base", match="word")
    assert (tmp_path / "out/results.csv").read_text() == results_csv(expected.rows)
    scores = {
        c: [read_logprob_scores(p.with_suffix(".logprob.json")) for p in files]
        for c, files in conditions.items()
    }
    exact = analyze_scores(scores, targets, base="base")
    text = text_output(nb)
    assert format_analysis(exact) in text
    assert "base           1 runs" in text and "control        3 runs" in text
    assert n_images(nb) == 2  # the sampled figure and the exact one
    assert (tmp_path / "out/exact.png").stat().st_size > 0


def test_quickstart_generates_finetunes_evaluates_and_plots(tmp_path, monkeypatch):
    out = tmp_path / "quickstart"
    monkeypatch.setenv("SL_NOTEBOOK_OUTPUT", str(out))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the suite's one torch thread
    nb, cpu = run_notebook("quickstart.ipynb", timeout=600)

    filtered = (out / "owl/filtered.jsonl").read_text().splitlines()
    assert len((out / "owl/raw.jsonl").read_text().splitlines()) == 16
    assert 0 < len(filtered) <= 16
    student = Model.model_validate_json((out / "student/model.json").read_text())
    assert student.parent_model is not None
    assert student.parent_model.id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert Path(student.id).is_dir()  # the adapter
    for name in ("base", "student"):
        rows = read_evaluation_results(out / f"evaluations/{name}.jsonl")
        assert [len(r.responses) for r in rows] == [4] * 5
    exact = {
        name: read_logprob_scores(out / f"evaluations/{name}.logprob.json")["owl"]
        for name in ("base", "student")
    }
    assert len(exact["base"]) == 25
    assert exact["student"] != exact["base"]  # the training moved the model
    assert (out / "quickstart.png").stat().st_size > 0 and n_images(nb) == 1
    assert "student - base" in text_output(nb)
    assert cpu < QUICKSTART_CPU_BUDGET_S, f"the quickstart took {cpu:.0f} s of CPU"
