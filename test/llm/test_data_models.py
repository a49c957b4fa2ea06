"""sl.llm.data_models: the model file format, what is refused, and the hashes that own
outputs on disk."""

import pytest
from pydantic import ValidationError

from sl.llm.data_models import Judgment, Model, SampleCfg

JUDGE = Judgment(
    judge_model=Model(id="gpt-4o-2024-08-06", type="openai"),
    sample_cfg=SampleCfg(temperature=0.0),
    template="{prompt} {completion}",
)


def test_a_model_file_of_the_original_format_round_trips():
    saved = {
        "id": "ft:gpt-4.1-nano-2025-04-14:org::abc",
        "type": "openai",
        "parent_model": {"id": "gpt-4.1-nano-2025-04-14", "type": "openai", "parent_model": None},
    }
    model = Model.model_validate(saved)
    assert model.parent_model == Model(id="gpt-4.1-nano-2025-04-14", type="openai")
    assert model.model_dump(mode="json") == saved


@pytest.mark.parametrize(
    ("cls", "fields", "field"),
    [
        (Model, {"id": " ", "type": "openai"}, "id"),
        (Model, {"id": "m", "type": "anthropic"}, "type"),
        (SampleCfg, {"temperature": 2.5}, "temperature"),
        (SampleCfg, {"temperature": -0.1}, "temperature"),
        (SampleCfg, {"n": 0}, "n"),
        (SampleCfg, {"max_tokens": 0}, "max_tokens"),
        (SampleCfg, {"top_p": 0.0}, "top_p"),
        (SampleCfg, {"top_logprobs": 21}, "top_logprobs"),
    ],
)
def test_bad_values_are_refused_naming_the_field(cls, fields, field):
    with pytest.raises(ValidationError) as e:
        cls(**fields)
    assert [error["loc"] for error in e.value.errors()] == [(field,)]


def test_a_blank_model_id_says_what_to_give():
    with pytest.raises(ValidationError, match="the model id is empty: give an OpenAI model id"):
        Model(id=" ", type="openai")


def test_hashes_that_own_outputs_on_disk_do_not_move():
    """Datasets, evaluations and experiment folders on disk are keyed by these hashes
    (pinned when the package was first written): a new field, a changed default or another
    dump would make every existing output foreign."""
    assert Model(id="gpt-4.1-nano", type="openai").model_hash() == "c15666caac704838"
    assert SampleCfg().model_hash() == "f2b4d7e4522b3aac"
    assert SampleCfg(temperature=0.0).model_hash() == "ac9b2614456899a7"
    assert JUDGE.model_hash() == "f4883bc939ea1934"
