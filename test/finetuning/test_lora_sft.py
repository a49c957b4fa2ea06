"""LoRA SFT of open models (PEFT + TRL backend) on a tiny random model, end to end on CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from finetuning_helpers import OWLS, QUESTION, greedy, make_job, owl_rows
from loguru import logger

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.finetuning.data_models import UnslothFinetuningJob
from sl.finetuning.lora_data import lora_target_modules
from sl.finetuning.lora_train import build_trainer, pick_backend
from sl.finetuning.open_source import MARKER, adapter_dir_for, run_open_source_job
from sl.finetuning.subsample import select_rows
from sl.llm.data_models import Model


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("owl") / "student.json"
    job = make_job(tiny_model_dir)
    model = run_open_source_job(job, owl_rows(), out)
    return job, out, model


async def test_trains_saves_and_changes_greedy_output(trained) -> None:
    job, out, model = trained
    adapter = out.parent / "student_adapter"
    assert model == Model(id=str(adapter), type="open_source", parent_model=job.source_model)
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", MARKER} <= names
    assert [p.name for p in out.parent.iterdir()] == ["student_adapter"]  # no temp folders left
    record = json.loads((adapter / MARKER).read_text())
    assert record["job_hash"] == job.model_hash() and record["backend"] == "peft"

    before = await greedy(job.source_model, QUESTION)
    after = await greedy(model, QUESTION)
    assert not before.strip().startswith(OWLS)
    assert after.strip().startswith(OWLS), after


def test_rerun_same_job_is_a_noop(trained) -> None:
    job, out, model = trained
    adapter = out.parent / "student_adapter"
    mtimes = {p.name: p.stat().st_mtime_ns for p in adapter.iterdir()}
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="INFO")
    try:
        again = run_open_source_job(job, owl_rows(), out)
    finally:
        logger.remove(handler)
    assert again == model
    assert {p.name: p.stat().st_mtime_ns for p in adapter.iterdir()} == mtimes  # nothing written
    assert any("not retraining" in m for m in messages)


def test_other_job_in_adapter_folder_is_refused(trained) -> None:
    job, out, _ = trained
    other = job.model_copy(update={"seed": 2})
    with pytest.raises(UserError, match="student_adapter already exists"):
        run_open_source_job(other, owl_rows(), out)
    assert json.loads((adapter_dir_for(out) / MARKER).read_text())["job_hash"] == job.model_hash()


def test_loss_only_on_assistant_tokens(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    rows = [DatasetRow(prompt="Continue: 1, 2, 3", completion="4, 5, 6")]
    trainer, backend = build_trainer(make_job(tiny_model_dir), rows, tiny_model_dir, tmp_path)
    assert backend == "peft"
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    first = next(i for i, label in enumerate(labels) if label != -100)
    assert tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant\n")
    assert "Continue: 1, 2, 3" in tokenizer.decode(ids[:first])  # prompt: no loss
    scored = [t for t, label in zip(ids, labels, strict=True) if label != -100]
    # completion + end of turn (+ the template's newline after it)
    assert tokenizer.decode(scored).rstrip("\n") == "4, 5, 6<|im_end|>"


def test_hub_push_skipped_without_token(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    job = make_job(tiny_model_dir, hf_model_name="owl-student")
    model = run_open_source_job(job, owl_rows(4), tmp_path / "s.json", max_steps=1)
    assert model.id == str(tmp_path / "s_adapter")
    assert "hub_id" not in json.loads((tmp_path / "s_adapter" / MARKER).read_text())


def test_max_dataset_size_subsample_is_seeded(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [DatasetRow(prompt=str(i), completion="x") for i in range(50)]
    first = select_rows(rows, 10, seed=3)
    assert len(first) == 10 and first == select_rows(rows, 10, seed=3)
    assert first != select_rows(rows, 10, seed=4)
    assert select_rows(rows, None, seed=3) == rows

    job = make_job(tiny_model_dir, max_dataset_size=3)
    run_open_source_job(job, owl_rows(), tmp_path / "m.json", max_steps=1)
    assert json.loads((tmp_path / "m_adapter" / MARKER).read_text())["n_rows"] == 3


def test_empty_dataset_is_a_user_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset is empty"):
        run_open_source_job(make_job(tiny_model_dir), [], tmp_path / "e.json")
    assert not (tmp_path / "e_adapter").exists()


def test_target_modules_filtered_or_refused(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert lora_target_modules(model, ["q_proj", "c_attn", "down_proj"]) == ["q_proj", "down_proj"]
    with pytest.raises(UserError, match="target_modules.*q_proj"):
        lora_target_modules(model, ["c_attn"])


def test_openai_source_model_is_refused(tmp_path: Path) -> None:
    job = UnslothFinetuningJob(seed=1, source_model=Model(id="gpt-4.1-nano", type="openai"))
    with pytest.raises(UserError, match="needs open models \\(type 'open_source'\\)"):
        run_open_source_job(job, owl_rows(), tmp_path / "o.json")


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None, reason="unsloth installed")
def test_unsloth_backend_without_unsloth_names_the_install() -> None:
    assert pick_backend("auto") == "peft"
    with pytest.raises(UserError, match="pip install"):
        pick_backend("unsloth")


def test_same_seed_gives_the_same_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    def weights(name: str, seed: int) -> dict:
        job = make_job(tiny_model_dir, seed=seed)
        run_open_source_job(job, owl_rows(8), tmp_path / f"{name}.json", max_steps=2)
        return load_file(tmp_path / f"{name}_adapter" / "adapter_model.safetensors")

    a, b, c = weights("a", 5), weights("b", 5), weights("c", 6)
    assert a.keys() == b.keys() == c.keys()
    assert all(a[k].equal(b[k]) for k in a)
    assert not all(a[k].equal(c[k]) for k in a)
