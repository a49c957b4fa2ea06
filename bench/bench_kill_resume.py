"""What a killed run costs: requests of killed-then-resumed runs against uninterrupted ones.

Runs the real scripts in subprocesses against the loopback OpenAI server of the test suite
(`test/helpers/openai_server.py`): a teacher dataset (`generate_dataset.py`) and a whole
OpenAI experiment (`run_experiment.py`: datasets, fine-tuning jobs, judged-free sampled
evaluation), each uninterrupted, killed once at 40 % of its requests, and killed three times
(at 25, 50 and 75 %). Prints the requests sent, the ratio to the uninterrupted run, the
fine-tuning jobs created, and whether the finished outputs are byte-identical.

    .venv/bin/python bench/bench_kill_resume.py
"""

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "helpers"))

from openai_server import FakeOpenAIServer  # noqa: E402
from script_runner import openai_env  # noqa: E402

DATASET_CFG = """
from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.llm.data_models import Model, SampleCfg

cfg = Cfg(model=Model(id="gpt-4.1-nano", type="openai"), system_prompt="You love owls.",
          sample_cfg=SampleCfg(temperature=1.0), prompt_set=NumsDatasetPromptSet(size=600, seed=1),
          filter_fns=[NumbersFilter()])
"""

EXPERIMENT_CFG = """
from sl.datasets.services import NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model, SampleCfg

model = Model(id="gpt-4.1-nano", type="openai")
cfg = ExperimentCfg(
    teacher_model=model, targets=["owl", "eagle"],
    prompt_set=NumsDatasetPromptSet(size=120, seed=42),
    student_job=OpenAIFTJob(seed=1, source_model=model, n_epochs=1),
    evaluations={"favorite": Evaluation(
        questions=[f"Name your favorite animal ({i})." for i in range(20)],
        n_samples_per_question=100, sample_cfg=SampleCfg(temperature=1.0))},
)
"""


def responder(body):
    text = body["messages"][-1]["content"]
    if "animal" in text:
        return "Owl"
    return "145, 267, 891"


def run_case(script: str, cfg_text: str, outputs: list[str], kills: list[float], total: int):
    """Run `script` to the end, killing it when the server has answered each fraction of
    `total` requests in `kills`; returns (requests, jobs created, digest of `outputs`)."""
    with FakeOpenAIServer(latency_s=0.01) as server, tempfile.TemporaryDirectory() as tmp:
        server.responder = responder
        cfg = Path(tmp) / "cfg.py"
        cfg.write_text(cfg_text)
        args = ["--config_module", str(cfg), "--cfg_var_name", "cfg"]
        if script == "generate_dataset.py":
            args += ["--raw_dataset_path", f"{tmp}/raw.jsonl"]
            args += ["--filtered_dataset_path", f"{tmp}/filtered.jsonl"]
        else:
            args += ["--output_dir", f"{tmp}/exp"]
        env = {**os.environ, "SL_NO_DOTENV": "1", "TQDM_DISABLE": "1", **openai_env(server)}
        env["OPENAI_MAX_CONCURRENCY"] = "8"
        cmd = [sys.executable, str(ROOT / "scripts" / script), *args]
        for fraction in kills:
            proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while server.n_chat_ok < fraction * total and proc.poll() is None:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        digest = hashlib.sha256()
        for name in outputs:
            digest.update((Path(tmp) / name).read_bytes())
        return len(server.chat_requests), server.ft_jobs_created, digest.hexdigest()[:12]


def main() -> None:
    cases = {
        "generation (600 prompts)": (
            "generate_dataset.py",
            DATASET_CFG,
            ["raw.jsonl", "filtered.jsonl"],
        ),
        "experiment (3 arms, 20 q x 100 samples)": (
            "run_experiment.py",
            EXPERIMENT_CFG,
            ["exp/results.csv", "exp/datasets/owl/filtered.jsonl"],
        ),
    }
    print(f"{'case':42} {'kills':>6} {'requests':>9} {'ratio':>6} {'ft jobs':>8}  outputs")
    for name, (script, cfg_text, outputs) in cases.items():
        base, jobs, digest = run_case(script, cfg_text, outputs, [], 0)
        print(f"{name:42} {0:>6} {base:>9} {1.0:>6.2f} {jobs:>8}  {digest}")
        for kills in ([0.4], [0.25, 0.6, 0.9]):
            n, jobs, d = run_case(script, cfg_text, outputs, kills, base)
            same = "same" if d == digest else f"DIFFERENT ({d})"
            print(f"{'':42} {len(kills):>6} {n:>9} {n / base:>6.2f} {jobs:>8}  {same}")


if __name__ == "__main__":
    main()
