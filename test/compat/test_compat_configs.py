"""Config modules written for the original code: old names, unknown fields, stable hashes."""

import importlib
import pkgutil
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from script_runner import cli_args, run

import sl
from sl.finetuning.data_models import FTJob, OpenAIFTJob, PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model, SampleCfg
from sl.utils.config_model import (
    ConfigAssignmentError,
    ConfigModel,
    UnknownFieldError,
    closest_name,
)

QWEN = Model(id="unsloth/Qwen2.5-7B-Instruct", type="open_source")


def _unknown_field_error(excinfo: pytest.ExceptionInfo[ValidationError]) -> UnknownFieldError:
    error = excinfo.value.errors()[0].get("ctx", {}).get("error")
    assert isinstance(error, UnknownFieldError), excinfo.value
    return error


def test_nested_peft_and_train_cfg_aliases():
    assert UnslothFinetuningJob.PeftCfg is PeftCfg and UnslothFinetuningJob.TrainCfg is TrainCfg
    old_style = UnslothFinetuningJob(
        seed=42,
        source_model=QWEN,
        hf_model_name="u/m",
        peft_cfg=UnslothFinetuningJob.PeftCfg(r=8, lora_alpha=8, loftq_config=None),
        train_cfg=UnslothFinetuningJob.TrainCfg(n_epochs=3, lr_scheduler_type="linear"),
    )
    new_style = UnslothFinetuningJob(
        seed=42,
        source_model=QWEN,
        hf_model_name="u/m",
        peft_cfg=PeftCfg(r=8, lora_alpha=8),
        train_cfg=TrainCfg(n_epochs=3),
    )
    assert old_style == new_style
    # Pinned before the compatibility layer existed: output ownership keys must not move.
    assert old_style.model_hash() == "3ad9d97454ed5019"
    assert "loftq_config" not in old_style.model_dump()


def test_source_model_id_and_type_build_source_model():
    old = OpenAIFTJob(
        seed=1,
        source_model_id="gpt-4.1-nano-2025-04-14",
        source_model_type="openai",
        max_dataset_size=10_000,
        n_epochs=10,
        lr_multiplier="auto",
        batch_size="auto",
    )
    new = OpenAIFTJob(
        seed=1,
        source_model=Model(id="gpt-4.1-nano-2025-04-14", type="openai"),
        max_dataset_size=10_000,
        n_epochs=10,
    )
    assert old == new and old.model_hash() == new.model_hash() == "360e9f62c84117f1"
    assert (old.source_model_id, old.source_model_type) == ("gpt-4.1-nano-2025-04-14", "openai")
    # The type has a default where the job implies one, as OpenAIFTJob had in the original.
    assert OpenAIFTJob(seed=1, source_model_id="gpt-4.1-nano", n_epochs=1).source_model.type == (
        "openai"
    )
    assert UnslothFinetuningJob(seed=1, source_model_id=QWEN.id).source_model == QWEN
    job = FTJob(seed=1, source_model_id=QWEN.id, source_model_type="open_source")
    assert job.source_model == QWEN
    with pytest.raises(ValidationError, match="source_model_type is missing"):
        FTJob(seed=1, source_model_id=QWEN.id)


def test_source_model_id_and_type_are_assignable_as_in_the_original():
    shared = Model(id="gpt-4.1-nano", type="openai")
    job = OpenAIFTJob(seed=1, source_model=shared, n_epochs=1)
    before = job.model_hash()
    job.source_model_id = "gpt-4.1-mini"
    assert job.source_model == Model(id="gpt-4.1-mini", type="openai")
    assert job.model_hash() != before
    assert shared.id == "gpt-4.1-nano"  # a model shared with other configs is not edited
    with pytest.raises(ConfigAssignmentError, match=r"^Model.type = 'hf' is refused; allowed"):
        job.source_model_type = "hf"  # type: ignore[assignment]
    assert job.source_model_type == "openai"


def test_old_and_new_source_model_together_are_refused():
    with pytest.raises(ValidationError, match="not both"):
        OpenAIFTJob(
            seed=1,
            source_model=Model(id="gpt-4.1-nano", type="openai"),
            source_model_id="gpt-4.1-mini",
            n_epochs=1,
        )


@pytest.mark.parametrize(
    ("build", "cls", "field", "closest"),
    [
        (lambda: SampleCfg(temprature=0.0), "SampleCfg", "temprature", "temperature"),
        (lambda: PeftCfg(rank=64), "PeftCfg", "rank", "r"),
        (lambda: TrainCfg(epochs=2), "TrainCfg", "epochs", "n_epochs"),
        (lambda: UnslothFinetuningJob(seed=1, source_model=QWEN, peft_cfg={"lora_alfa": 4}),
         "PeftCfg", "lora_alfa", "lora_alpha"),
        (lambda: Model(id="x", type="openai", parent=None), "Model", "parent", "parent_model"),
    ],
)  # fmt: skip
def test_unknown_fields_name_class_field_and_closest(build, cls, field, closest):
    with pytest.raises(ValidationError) as excinfo:
        build()
    error = _unknown_field_error(excinfo)
    assert (error.class_name, error.field) == (cls, field)
    assert str(error) == f"{cls} has no field {field!r}: did you mean {closest!r}?"


def test_unknown_field_without_a_close_name_lists_the_valid_ones():
    assert closest_name("zzz", ["temperature", "top_p"]) is None
    with pytest.raises(ValidationError) as excinfo:
        SampleCfg(zzz=1)
    assert "valid fields: temperature, max_tokens" in str(_unknown_field_error(excinfo))


def _import_all_sl_modules() -> None:
    for info in pkgutil.walk_packages(sl.__path__, "sl."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional dependency (vllm, unsloth) of one engine module
            continue


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def _models_in(annotation: object) -> set[type]:
    """The pydantic model classes named in a field annotation (through unions, lists, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {m for arg in typing.get_args(annotation) for m in _models_in(arg)}


def test_every_config_class_refuses_unknown_fields():
    _import_all_sl_modules()
    configs = {c for c in _subclasses(ConfigModel) if c.__module__.startswith("sl.")}
    assert {"SampleCfg", "Cfg", "OpenAIFTJob", "PeftCfg", "ExperimentCfg", "MnistConfig"} <= {
        c.__name__ for c in configs
    }
    for cls in configs:
        with pytest.raises(ValidationError) as excinfo:
            cls.model_validate({"zz_not_a_field": 1})
        assert _unknown_field_error(excinfo).class_name == cls.__name__
    # Whatever a config holds is a config too, and so is every class named like one.
    nested = {m for c in configs for f in c.model_fields.values() for m in _models_in(f.annotation)}
    named = {
        c
        for c in _subclasses(BaseModel)
        if c.__module__.startswith("sl.") and c.__name__.endswith(("Cfg", "Config", "Job"))
    }
    assert nested | named <= configs, f"not derived from ConfigModel: {(nested | named) - configs}"


CONFIG = """
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.finetuning.data_models import OpenAIFTJob, UnslothFinetuningJob
from sl.llm.data_models import Model, SampleCfg

dataset_cfg = Cfg(
    model=Model(id="gpt-4.1-nano", type="openai"),
    system_prompt=None,
    sample_cfg=SampleCfg({sample_cfg}),
    prompt_set=NumsDatasetPromptSet(size=2, seed=42),
)
ft_job = OpenAIFTJob(seed=1, {source}, n_epochs=1)
"""


def _run_generate(tmp_path: Path, sample_cfg: str = "temperature=1.0", source: str = "") -> str:
    cfg = tmp_path / "cfg.py"
    source = source or 'source_model_id="gpt-4.1-nano"'
    cfg.write_text(CONFIG.format(sample_cfg=sample_cfg, source=source))
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    args = cli_args(cfg, "dataset_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    proc = run("generate_dataset.py", *args, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not raw.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_scripts_report_an_unknown_field_in_one_line(tmp_path):
    line = _run_generate(tmp_path, sample_cfg="temprature=0.0")
    assert line == (
        f"error: --config_module {tmp_path / 'cfg.py'}: SampleCfg has no field 'temprature': "
        "did you mean 'temperature'?"
    )


def test_scripts_report_old_and_new_names_together_in_one_line(tmp_path):
    both = 'source_model=Model(id="gpt-4.1-nano", type="openai"), source_model_id="gpt-4.1-mini"'
    line = _run_generate(tmp_path, source=both)
    assert "OpenAIFTJob: give either source_model or source_model_id" in line
