"""Audit: bad inputs through the real scripts, each classified by how it ends.

    .venv/bin/python bench/audit_bad_inputs.py
    .venv/bin/python bench/audit_bad_inputs.py --verbose  # also each case's error line

Each case runs one script as a subprocess (with a timeout) against the loopback
OpenAI-compatible server of the test suite, in a fresh folder, and ends as:
  one line   exit != 0 with exactly one "error: ..." line and no traceback (the goal);
  bug        that one line says "unexpected ... (a bug)";
  accepted   exit 0: the bad input was taken;
  hang       still running at the timeout;
  traceback  a Python traceback reached the user;
  overwrite  a file of the user's was changed (checked where a case has one);
  sent       a request reached the server although the input was refused before (it must not);
  other      anything else (e.g. several error lines).
Cases cover issue #20 items 5, 9, 10 and 11 that validation owns: unsafe target names,
non-finite and huge numbers, empty ids and rows, FIFOs, exiting config modules, bad filters,
analyze_results ownership, MNIST sizes, an empty model folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "helpers"))

from openai_server import FakeOpenAIServer  # noqa: E402
from script_runner import TEST_API_KEY, openai_env, responder  # noqa: E402

TIMEOUT_S = 30
FIXTURES = ROOT / "test" / "fixtures" / "multi_animal"

HEADER = """
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.finetuning.data_models import OpenAIFTJob, PeftCfg, UnslothFinetuningJob
from sl.llm.data_models import Model, SampleCfg
model = Model(id="gpt-4.1-nano", type="openai")
def dataset(**kw):
    fields = dict(model=model, system_prompt=None, sample_cfg=SampleCfg(),
                  prompt_set=NumsDatasetPromptSet(size=4))
    return Cfg(**{**fields, **kw})
def evaluation(**kw):
    return Evaluation(**{**dict(questions=["q"], n_samples_per_question=1,
                                sample_cfg=SampleCfg()), **kw})
def experiment(**kw):
    open_model = Model(id="some/model", type="open_source")
    fields = dict(teacher_model=open_model, targets=["owl"],
                  student_job=UnslothFinetuningJob(seed=1, source_model=open_model),
                  evaluations={"e": evaluation()})
    return ExperimentCfg(**{**fields, **kw})
"""


@dataclass
class Case:
    """One bad input: a config line (`cfg = ...`), the script and its path flags."""

    name: str
    script: str
    config: str = ""  # the body after HEADER; must define `cfg`
    flags: Callable[[Path], list[str]] = lambda d: []
    setup: Callable[[Path], object] = lambda d: None
    user_file: str | None = None  # a file of the user's that must stay as it is
    quiet_server: bool = True  # the input is refused before any request
    extra: dict[str, str] = field(default_factory=dict)


def gen_flags(d: Path) -> list[str]:
    return ["--raw_dataset_path", str(d / "raw.jsonl"), "--filtered_dataset_path",
            str(d / "filtered.jsonl")]  # fmt: skip


def ft_flags(dataset: str = "data.jsonl", out: str = "model.json") -> Callable[[Path], list[str]]:
    return lambda d: ["--dataset_path", str(d / dataset), "--output_path", str(d / out)]


def eval_flags(model: str = "model.json", out: str = "eval.jsonl") -> Callable[[Path], list[str]]:
    return lambda d: ["--model_path", str(d / model), "--output_path", str(d / out)]


def exp_flags(d: Path) -> list[str]:
    return ["--output_dir", str(d / "out")]


def write(name: str, text: str) -> Callable[[Path], object]:
    return lambda d: (d / name).write_text(text)


def rows(*pairs: tuple[str, str]) -> str:
    return "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs)


def fifo(name: str, then: Callable[[Path], object] = lambda d: None) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        os.mkfifo(d / name)
        then(d)

    return setup


MODEL_JSON = write("model.json", json.dumps({"id": "gpt-4.1-nano", "type": "openai"}))
DATASET = write("data.jsonl", rows(("p", "1, 2, 3")))
FT = "cfg = OpenAIFTJob(seed=1, source_model=model, {})"


def analyze_flags(d: Path) -> list[str]:
    conditions = []
    for name in ("control", "eagle"):
        conditions += [
            "--condition",
            name,
            *(str(FIXTURES / f"{name}_run{r}.jsonl") for r in (1, 2)),
        ]
    return [*conditions, "--targets", "eagle", "--output_dir", str(d / "analysis")]


def analysis_file(name: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / "analysis").mkdir()
        (d / "analysis" / name).write_text("the user's own\n")

    return setup


def empty_model_folder(d: Path) -> None:
    (d / "empty").mkdir()
    (d / "model.json").write_text(json.dumps({"id": str(d / "empty"), "type": "open_source"}))


CASES = [
    # item 6 / 5: names that become paths
    *(Case(f"experiment target {t!r}", "run_experiment.py", f"cfg = experiment(targets=[{t!r}])",
           exp_flags) for t in ["../../etc", "/", "", ".", "a/b", "o\0wl"]),
    Case("experiment evaluation name '../e'", "run_experiment.py",
         "cfg = experiment(evaluations={'../e': evaluation()})", exp_flags),
    # item 9: numbers
    Case("lr_multiplier=nan", "run_finetuning_job.py", FT.format("lr_multiplier=float('nan')"),
         ft_flags(), DATASET),
    Case("lr_multiplier=inf", "run_finetuning_job.py", FT.format("lr_multiplier=float('inf')"),
         ft_flags(), DATASET),
    Case("n_epochs=10**9", "run_finetuning_job.py", FT.format("n_epochs=10**9"), ft_flags(),
         DATASET),
    Case("seed=2**70", "run_finetuning_job.py", "cfg = OpenAIFTJob(seed=2**70, source_model=model)",
         ft_flags(), DATASET),
    Case("max_tokens=10**15", "generate_dataset.py",
         "cfg = dataset(sample_cfg=SampleCfg(max_tokens=10**15))", gen_flags),
    Case("temperature=nan", "generate_dataset.py",
         "cfg = dataset(sample_cfg=SampleCfg(temperature=float('nan')))", gen_flags),
    Case("empty model id", "generate_dataset.py", "cfg = dataset(model=Model(id='', type='openai'))",
         gen_flags),
    Case("lora_dropout=-3", "run_finetuning_job.py",
         "cfg = UnslothFinetuningJob(seed=1, source_model=Model(id='m', type='open_source'), "
         "peft_cfg=PeftCfg(lora_dropout=-3))", ft_flags(), DATASET),
    Case("lora_dropout=2", "run_finetuning_job.py",
         "cfg = UnslothFinetuningJob(seed=1, source_model=Model(id='m', type='open_source'), "
         "peft_cfg=PeftCfg(lora_dropout=2))", ft_flags(), DATASET),
    # item 10: sizes that hung
    Case("size=10**10", "generate_dataset.py",
         "cfg = dataset(prompt_set=NumsDatasetPromptSet(size=10**10))", gen_flags),
    Case("example_max_count=10**10", "generate_dataset.py",
         "cfg = dataset(prompt_set=NumsDatasetPromptSet(size=2, example_max_count=10**10))",
         gen_flags),
    Case("n_samples_per_question=10**10", "run_evaluation.py",
         "cfg = evaluation(n_samples_per_question=10**10)", eval_flags(), MODEL_JSON),
    # item 9: rows
    Case("empty prompt row", "run_finetuning_job.py", FT.format(""), ft_flags(),
         write("data.jsonl", rows(("p", "1"), ("", "2")))),
    Case("empty completion row", "run_finetuning_job.py", FT.format(""), ft_flags(),
         write("data.jsonl", rows(("p", "1"), ("q", "")))),
    # item 9: config modules
    *(Case(f"config calls sys.exit({c})", "generate_dataset.py", f"import sys\nsys.exit({c})",
           gen_flags) for c in ["0", "3"]),
    Case("config raises on import", "generate_dataset.py", "raise RuntimeError('boom')",
         gen_flags),
    # item 9: filters
    Case("filter of wrong arity", "generate_dataset.py",
         "cfg = dataset(filter_fns=[lambda completion: True])", gen_flags),
    Case("filter that raises", "generate_dataset.py",
         "def picky(p, c):\n    return int(c) > 0\ncfg = dataset(filter_fns=[picky])", gen_flags,
         quiet_server=False),
    # item 10: FIFOs and devices
    Case("FIFO as --dataset_path", "run_finetuning_job.py", FT.format(""), ft_flags("fifo"),
         fifo("fifo")),
    Case("FIFO as --model_path", "run_evaluation.py", "cfg = evaluation()", eval_flags("fifo"),
         fifo("fifo")),
    Case("FIFO as --raw_dataset_path", "generate_dataset.py", "cfg = dataset()",
         lambda d: ["--raw_dataset_path", str(d / "fifo"), "--filtered_dataset_path",
                    str(d / "f.jsonl")], fifo("fifo")),
    Case("FIFO as --output_path (fine-tune)", "run_finetuning_job.py", FT.format(""),
         ft_flags(out="fifo"), fifo("fifo", DATASET)),
    # item 11 / 9: analyze_results
    Case("analyze_results: user's results.csv", "analyze_results.py", flags=analyze_flags,
         setup=analysis_file("results.csv"), user_file="analysis/results.csv"),
    Case("analyze_results: user's results.json", "analyze_results.py", flags=analyze_flags,
         setup=analysis_file("results.json"), user_file="analysis/results.json"),
    Case("analyze_results: output folder is a file", "analyze_results.py", flags=analyze_flags,
         setup=write("analysis", "x")),
    # item 9: MNIST and open models
    Case("MNIST --hidden 10000000", "run_mnist_experiment.py",
         flags=lambda d: ["--hidden", "10000000", "--output_dir", str(d / "m")]),
    Case("MNIST --lr nan", "run_mnist_experiment.py",
         flags=lambda d: ["--lr", "nan", "--output_dir", str(d / "m")]),
    Case("MNIST --n_models 10**9", "run_mnist_experiment.py",
         flags=lambda d: ["--n_models", str(10**9), "--output_dir", str(d / "m")]),
    Case("empty model folder", "run_evaluation.py", "cfg = evaluation()", eval_flags(),
         empty_model_folder),
]  # fmt: skip


def classify(case: Case, folder: Path, server: FakeOpenAIServer) -> tuple[str, str]:
    """Run `case` in `folder`; (its class, its last stderr line)."""
    args = [sys.executable, str(ROOT / "scripts" / case.script)]
    if case.config:
        (folder / "cfg.py").write_text(HEADER + case.config + "\n")
        args += ["--config_module", str(folder / "cfg.py"), "--cfg_var_name", "cfg"]
    case.setup(folder)
    before = (folder / case.user_file).read_bytes() if case.user_file else None
    env = {**os.environ, "SL_NO_DOTENV": "1", "HF_HUB_OFFLINE": "1", **openai_env(server)}
    sent_before = server.requests_total
    try:
        proc = subprocess.run([*args, *case.flags(folder)], env={**env, **case.extra},
                              capture_output=True, text=True, timeout=TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "hang", f"still running after {TIMEOUT_S} s"
    err = proc.stderr
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    last = errors[-1] if errors else (err.strip().splitlines() or [""])[-1]
    if case.user_file and (folder / case.user_file).read_bytes() != before:
        return "overwrite", last
    if proc.returncode == 0:
        return "accepted", last
    if "Traceback" in err:
        return "traceback", last
    if len(errors) != 1:
        return "other", last
    if "unexpected" in errors[0]:
        return "bug", last
    if case.quiet_server and server.requests_total != sent_before:
        return "sent", last
    return "one line", last


def main() -> None:
    parser = argparse.ArgumentParser(description="Bad inputs through the real scripts")
    parser.add_argument("--verbose", action="store_true", help="Print each case's error line")
    parser.add_argument("--only", default="", help="Run only the cases whose name has this")
    args = parser.parse_args()
    cases = [case for case in CASES if args.only in case.name]
    counts: Counter[str] = Counter()
    started = time.monotonic()
    with FakeOpenAIServer(require_api_key=TEST_API_KEY, responder=responder) as server:
        for case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                kind, line = classify(case, Path(tmp), server)
            counts[kind] += 1
            print(f"{kind:<10} {case.name}" + (f"\n           {line}" if args.verbose else ""))
    order = ["one line", "bug", "accepted", "hang", "traceback", "overwrite", "sent", "other"]
    print(f"\n{len(cases)} bad inputs in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"{k} {counts[k]}" for k in order))  # fmt: skip


if __name__ == "__main__":
    main()
