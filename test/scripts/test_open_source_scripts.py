"""The three phase scripts end to end with an `open_source` config (tiny model, transformers
engine, PEFT + TRL), and the open-model user errors through the scripts."""

import json
import signal
from pathlib import Path

import pytest
from finetuning_helpers import assert_same_adapter
from script_runner import assert_user_error, cli_args, run, start, wait_for

CONFIG = """
from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model, SampleCfg

base = Model(id={base!r}, type="open_source")
dataset_cfg = Cfg(
    model=base,
    system_prompt="You love owls.",
    sample_cfg=SampleCfg(temperature=1.0, max_tokens=12, seed=0),
    prompt_set=NumsDatasetPromptSet(size=12, seed=42),
    # The random tiny model writes no clean lists: keep everything to have rows to train on.
    filter_fns=[lambda prompt, completion: True],
)
ft_job = UnslothFinetuningJob(
    seed=1, source_model=base, backend="peft", peft_cfg=PeftCfg(r=4, lora_alpha=8),
    train_cfg=TrainCfg(n_epochs=1, per_device_train_batch_size=4,
                       gradient_accumulation_steps=1, max_seq_length=128),
)
evaluation = Evaluation(questions=["Name your favorite animal."], n_samples_per_question=3,
                        sample_cfg=SampleCfg(temperature=1.0, max_tokens=4))
strict_filter_cfg = dataset_cfg.model_copy(update={{"filter_fns": [NumbersFilter()]}})
"""


# The tiny model's engine and dtype, one CPU thread.
OPEN_MODEL_ENV = {
    "SL_OPEN_SOURCE_ENGINE": "transformers",
    "SL_TRANSFORMERS_DTYPE": "float32",
    "OMP_NUM_THREADS": "1",
}


def _generate(cfg, raw, filtered, check=True):
    args = cli_args(cfg, "dataset_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    return run("generate_dataset.py", *args, env_extra=OPEN_MODEL_ENV, check=check, timeout=300)


def test_three_phases_with_an_open_model(tiny_model_dir, tmp_path):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(base=str(tiny_model_dir)))
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    model_json, results = tmp_path / "student.json", tmp_path / "eval.jsonl"
    _generate(cfg, raw, filtered)
    assert len(filtered.read_text().splitlines()) == 12
    args = cli_args(cfg, "ft_job", dataset_path=filtered, output_path=model_json)
    run("run_finetuning_job.py", *args, env_extra=OPEN_MODEL_ENV, timeout=300)
    student = json.loads(model_json.read_text())
    adapter = Path(student["id"])
    assert adapter == tmp_path / "student_adapter" and (adapter / "adapter_config.json").exists()
    assert student["parent_model"]["id"] == str(tiny_model_dir)
    args = cli_args(cfg, "evaluation", model_path=model_json, output_path=results)
    run("run_evaluation.py", *args, env_extra=OPEN_MODEL_ENV, timeout=300)
    rows = [json.loads(line) for line in results.open()]
    assert len(rows) == 1 and len(rows[0]["responses"]) == 3
    assert rows[0]["responses"][0]["response"]["model_id"] == student["id"]


LONG_JOB = """
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model

ft_job = UnslothFinetuningJob(
    seed=1, source_model=Model(id={base!r}, type="open_source"), backend="peft",
    peft_cfg=PeftCfg(r=4, lora_alpha=8, lora_dropout=0.1),
    train_cfg=TrainCfg(n_epochs=50, per_device_train_batch_size=4,
                       gradient_accumulation_steps=1, max_seq_length=64),
)
"""


@pytest.mark.parametrize(
    ("sig", "interval", "ready"),
    [
        # kill -9 after the first periodic save: the rerun resumes from that save
        (signal.SIGKILL, "1", "checkpoint-*/trainer_state.json"),
        # Ctrl-C as soon as the training is set up, no periodic saves: it saves at its step's end
        (signal.SIGINT, "0", "sl_run_key.txt"),
    ],
)
def test_a_training_killed_or_interrupted_resumes_to_the_same_adapter(
    tiny_model_dir, tmp_path, sig, interval, ready
):
    cfg, data = tmp_path / "cfg.py", tmp_path / "rows.jsonl"
    cfg.write_text(LONG_JOB.format(base=str(tiny_model_dir)))
    data.write_text("".join(json.dumps({"prompt": f"continue {i}", "completion": f"{i}, {i + 1}"})
                            + "\n" for i in range(12)))  # fmt: skip
    env = {**OPEN_MODEL_ENV, "SL_CHECKPOINT_INTERVAL_S": interval}

    def args(folder):
        return cli_args(cfg, "ft_job", dataset_path=data, output_path=tmp_path / folder / "m.json")

    run("run_finetuning_job.py", *args("straight"), env_extra=env, timeout=300)
    saved = tmp_path / "stopped/m_adapter.checkpoint"
    proc = start("run_finetuning_job.py", *args("stopped"), env_extra=env)
    try:
        wait_for(lambda: any(saved.glob(ready)), timeout=120)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert any(saved.glob("checkpoint-*/trainer_state.json"))  # saved on the way out
    assert not (tmp_path / "stopped/m_adapter").exists()  # stopped before the end (150 steps)
    rerun = run("run_finetuning_job.py", *args("stopped"), env_extra=env, timeout=300)
    assert "resuming the training from" in rerun.stderr
    assert_same_adapter(tmp_path / "straight/m_adapter", tmp_path / "stopped/m_adapter")
    assert not saved.exists()


def test_missing_local_model_folder_is_one_clear_line(tmp_path):
    cfg = tmp_path / "cfg.py"
    missing = tmp_path / "no-such-model"
    cfg.write_text(CONFIG.format(base=str(missing)))
    proc = _generate(cfg, tmp_path / "r.jsonl", tmp_path / "f.jsonl", check=False)
    assert_user_error(proc, "no-such-model")
