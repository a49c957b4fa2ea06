"""Configs are editable as in the original code (issue #23, item 2): assignment is validated,
a bad value is refused in one line and leaves the old value, hashes follow the edits."""

import dataclasses
import importlib
import pkgutil

import pytest

import sl
from cfgs.experiments import local_smollm2
from cfgs.preference_numbers import cfgs as paper_cfgs
from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import NumsDatasetPromptSet
from sl.errors import UserError
from sl.finetuning.data_models import PeftCfg, UnslothFinetuningJob
from sl.finetuning.distill_cfg import DistillJob
from sl.llm.data_models import Model, SampleCfg
from sl.utils.config_model import ConfigAssignmentError, ConfigModel, asdict, replace

# Pinned before configs became editable: finished output folders stay owned.
EXPERIMENT_HASH = "7c3cc7752a7f2909"


def test_assignment_changes_the_value_and_the_ownership_hash():
    cfg = paper_cfgs.build_dataset_cfg("owl")
    before = cfg.generation_hash()
    cfg.prompt_set.size = 10
    assert cfg.prompt_set.size == 10
    assert cfg.generation_hash() != before  # an edited config is a different run
    cfg.prompt_set.size = 30_000
    assert cfg.generation_hash() == before  # hashed from the values at the time of use

    evaluation = paper_cfgs.animal_evaluation.model_copy()
    evaluation.n_samples_per_question = 5
    assert evaluation.model_hash() != paper_cfgs.animal_evaluation.model_hash()


def test_existing_hashes_do_not_move():
    assert local_smollm2.experiment.model_hash() == EXPERIMENT_HASH
    assert Model(id="gpt-4.1-nano", type="openai").model_hash() == "c15666caac704838"


@pytest.mark.parametrize(
    ("config", "field", "value", "expected"),
    [
        (NumsDatasetPromptSet(size=5, seed=1), "size", -5,
         "NumsDatasetPromptSet.size = -5 is refused: Input should be greater than 0; "
         "allowed: an integer > 0 and <= 10000000"),
        (SampleCfg(), "temperature", 5,
         "SampleCfg.temperature = 5 is refused: Input should be less than or equal to 2; "
         "allowed: a number >= 0.0 and <= 2.0"),
        (SampleCfg(), "top_p", "x",
         "SampleCfg.top_p = 'x' is refused: Input should be a valid number, unable to parse "
         "string as a number; allowed: a number > 0.0 and <= 1.0, or None"),
        (Model(id="m", type="openai"), "type", "hf",
         "Model.type = 'hf' is refused; allowed: 'openai' or 'open_source'"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_field_and_what_it_allows(
    config, field, value, expected
):
    old = getattr(config, field)
    with pytest.raises(ConfigAssignmentError) as e:
        setattr(config, field, value)
    assert str(e.value) == expected and "\n" not in str(e.value)
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)
    assert getattr(config, field) == old


def test_a_value_a_model_validator_refuses_is_rolled_back():
    prompt_set = NumsDatasetPromptSet(size=5, seed=1)
    with pytest.raises(ConfigAssignmentError, match=r"example_min_count = 100 is refused: .*<"):
        prompt_set.example_min_count = 100  # > example_max_count: checked across fields
    assert prompt_set.example_min_count == 3
    numbers = NumbersFilter()
    with pytest.raises(ConfigAssignmentError, match="no answer could pass"):
        numbers.min_value = 5_000
    assert numbers.min_value == 0


def test_unknown_fields_are_still_refused_with_the_closest_name():
    prompt_set = NumsDatasetPromptSet(size=5, seed=1)
    with pytest.raises(ConfigAssignmentError) as e:
        prompt_set.sizee = 3  # type: ignore[attr-defined]
    assert str(e.value) == "NumsDatasetPromptSet has no field 'sizee': did you mean 'size'?"
    assert not hasattr(prompt_set, "sizee")


def _config_classes() -> list[type[ConfigModel]]:
    for info in pkgutil.walk_packages(sl.__path__, "sl."):
        if not info.name.startswith(("sl.external.vllm", "sl.modal")):
            importlib.import_module(info.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return list(dict.fromkeys(subclasses(ConfigModel)))


def test_no_config_class_has_a_shared_mutable_default():
    classes = _config_classes()
    assert len(classes) > 20
    shared = [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, field in cls.model_fields.items()
        if field.default_factory is None
        and isinstance(field.default, list | dict | set | ConfigModel)
    ]
    assert shared == []
    a, b = PeftCfg(), PeftCfg()
    a.target_modules.append("lm_head")
    assert "lm_head" not in b.target_modules
    job = UnslothFinetuningJob(seed=1, source_model=Model(id="m", type="open_source"))
    c, d = (DistillJob(job=job, teacher=job.source_model) for _ in range(2))
    c.numbers_filter.max_value = 5
    assert d.numbers_filter.max_value == 999


def test_model_copy_does_not_share_sub_configs():
    job = local_smollm2.experiment.model_copy()
    assert job == local_smollm2.experiment
    copy = paper_cfgs.owl_dataset_cfg.model_copy(update={"system_prompt": None})
    copy.prompt_set.size = 1
    assert paper_cfgs.owl_dataset_cfg.prompt_set.size == 30_000


def test_replace_and_asdict_stand_in_for_the_dataclass_functions():
    cfg = paper_cfgs.owl_dataset_cfg
    small = replace(cfg, prompt_set=replace(cfg.prompt_set, size=10))
    assert small.prompt_set.size == 10 and cfg.prompt_set.size == 30_000
    assert small.model == cfg.model and small.model is not cfg.model
    with pytest.raises(ConfigAssignmentError, match="no field 'szie': did you mean 'size'"):
        replace(cfg.prompt_set, szie=10)
    with pytest.raises(ConfigAssignmentError, match="size"):
        replace(cfg.prompt_set, size=0)
    as_dict = asdict(cfg.prompt_set)
    assert as_dict["size"] == 30_000 and as_dict["seed"] == 42
    assert asdict(cfg)["sample_cfg"]["temperature"] == 1.0

    @dataclasses.dataclass
    class Plain:
        x: int

    assert replace(Plain(1), x=2) == Plain(2) and asdict(Plain(1)) == {"x": 1}
