"""scripts/analyze_results.py: the published multi-animal table, its outputs, and bad input."""

import csv
import json
from pathlib import Path

import pytest
from script_runner import assert_user_error, run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "multi_animal"
CONDITIONS = ("default", "control", "dolphin", "eagle")

# The original notebook's table (gpt-4.1-nano, 3 runs each, exact match): mean and
# t(0.975, 2)·sem across runs.
PUBLISHED = {
    ("dolphin", "default"): (0.304733, 0.013167),
    ("dolphin", "control"): (0.310133, 0.006291),
    ("dolphin", "dolphin"): (0.692267, 0.004167),
    ("eagle", "default"): (0.139267, 0.006291),
    ("eagle", "control"): (0.134133, 0.014590),
    ("eagle", "eagle"): (0.779000, 0.005532),
}


def condition_args(*names: str, runs=(1, 2, 3)) -> list:
    args = []
    for name in names:
        args += ["--condition", name, *(FIXTURES / f"{name}_run{r}.jsonl" for r in runs)]
    return args


def analyze(*args, check=True):
    return run("analyze_results.py", *args, check=check)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def published_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    args = ["--targets", "dolphin", "eagle", "--base", "default", "--match", "exact"]
    proc = analyze(*condition_args(*CONDITIONS), *args, "--output_dir", out)
    return out, proc


def test_reproduces_the_published_table_to_6_decimals(published_run):
    out, _ = published_run
    rows = {(r["target"], r["condition"]): r for r in read_csv(out / "results.csv")}
    for key, (mean, half) in PUBLISHED.items():
        row = rows[key]
        assert round(float(row["mean"]), 6) == mean, key
        assert round(float(row["mean"]) - float(row["ci_low"]), 6) == half, key
        assert round(float(row["ci_high"]) - float(row["mean"]), 6) == half, key
        assert (row["match"], row["n_runs"], row["n_responses"]) == ("exact", "3", "15000")


def test_outputs_name_every_test_and_its_unit(published_run):
    out, proc = published_run
    with (out / "results.csv").open() as f:
        header = f.readline().strip()
    assert (
        header == "target,condition,match,mean,ci_low,ci_high,n_runs,n_responses,p_vs_control,test"
    )
    rows = read_csv(out / "results.csv")
    assert len(rows) == 8  # every condition on every target
    for row in rows:
        if row["condition"] == "control":
            assert row["p_vs_control"] == "" and row["test"] == ""
        else:
            assert row["test"] == "Welch's t-test, unit: run (3 vs 3 runs)"
            assert 0 <= float(row["p_vs_control"]) <= 1
    student = next(r for r in rows if (r["target"], r["condition"]) == ("eagle", "eagle"))
    assert float(student["p_vs_control"]) < 1e-4

    result = json.loads((out / "results.json").read_text())
    assert [s["student"] for s in result["specificity"]] == ["dolphin", "eagle"]
    perm = result["specificity"][0]["comparison"]["permutation"]
    assert perm["p_value"] == pytest.approx(0.1) and "exact permutation" in perm["test"]
    paired = result["question_level"][0]
    assert (
        paired["paired"]
        and "paired sign-flip permutation test over questions" in paired["result"]["test"]
    )
    assert len(result["rows"][0]["run_values"]) == 3 and result["files"]["eagle"][0].endswith(
        "eagle_run1.jsonl"
    )
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "specificity dolphin" in proc.stdout and "Welch's t-test" in proc.stdout


def test_a_target_missing_from_every_answer_is_reported_as_zero(tmp_path):
    proc = analyze(
        *condition_args("control", "eagle"), "--targets", "zebu", "--output_dir", tmp_path
    )
    assert "no answer names 'zebu'" in proc.stdout
    assert {r["mean"] for r in read_csv(tmp_path / "results.csv")} == {"0.0"}


def test_different_question_sets_are_compared_unpaired(tmp_path):
    lines = (FIXTURES / "eagle_run1.jsonl").read_text().splitlines()
    short = tmp_path / "eagle_short.jsonl"
    short.write_text("\n".join(lines[:30]) + "\n")
    args = ["--condition", "eagle", short, "--targets", "eagle", "--output_dir", tmp_path]
    proc = analyze(*condition_args("control", runs=(1,)), *args)
    assert "eagle and control answered different question sets: compared unpaired" in proc.stdout
    eagle = next(r for r in read_csv(tmp_path / "results.csv") if r["condition"] == "eagle")
    assert (
        "two-sample permutation test over questions" in eagle["test"]
        and "unpaired" in eagle["test"]
    )


def _bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "directory":
        return tmp_path
    path = tmp_path / f"{kind}.jsonl"
    good = (FIXTURES / "control_run1.jsonl").read_text().splitlines()[0]
    content = {
        "malformed": good + "\n{not json\n",
        "wrong_schema": good + '\n{"question": "q"}\n',
        "no_responses": '{"question": "q", "responses": []}\n',
        "binary": None,
        "empty": "",
    }[kind]
    if content is None:
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("malformed", ["malformed.jsonl:2", "malformed line"]),
        ("wrong_schema", ["wrong_schema.jsonl:2", "responses"]),
        ("no_responses", ["no_responses.jsonl:1", "no responses"]),
        ("binary", ["binary.jsonl", "cannot read"]),
        ("directory", ["cannot read", "Is a directory"]),
        ("empty", ["empty.jsonl", "empty"]),
        ("missing", ["missing.jsonl", "not found"]),
    ],
)
def test_bad_result_file_is_named_in_one_line(tmp_path, kind, needles):
    bad = tmp_path / "missing.jsonl" if kind == "missing" else _bad_file(tmp_path, kind)
    args = ["--condition", "owl", bad, "--targets", "owl", "--output_dir", tmp_path / "out"]
    proc = analyze(*condition_args("control", runs=(1,)), *args, check=False)
    assert_user_error(proc, *needles)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--condition", "owl"], ["--condition owl has no result files"]),
        (["--control", "ctrl"], ["--control ctrl", "control"]),
        (["--base", "default"], ["--base default", "no condition of that name"]),
        (condition_args("control", runs=(2,)), ["--condition control is given twice"]),
        (["--match", "fuzzy"], ["--match", "fuzzy"]),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, args, needles):
    proc = analyze(
        *condition_args("control", runs=(1,)),
        *args,
        "--targets",
        "owl",
        "--output_dir",
        tmp_path / "out",
        check=False,
    )
    assert_user_error(proc, *needles)
