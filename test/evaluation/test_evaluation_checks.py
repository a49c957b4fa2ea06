"""An evaluation is checked before anything is claimed or paid: judge templates with a
placeholder other than {prompt}/{completion} are refused in one line naming the judgment and
the placeholder, and an output of another run names the part of the config that differs."""

import asyncio
import json

import pytest
from script_runner import assert_user_error, cli_args, run

from sl.errors import UserError
from sl.evaluation.data_models import Evaluation
from sl.evaluation.judge_template import template_problem
from sl.evaluation.services import run_evaluation
from sl.llm.data_models import Judgment, Model, SampleCfg
from sl.utils.run_meta import meta_path

MODEL = Model(id="gpt-4.1-nano", type="openai")

BAD_TEMPLATES = [
    ("Rate {answer} to {prompt}", "{answer}"),
    ('Answer as JSON {"score": 0-100} about {completion}', '{"score": 0-100}'),
    ("Rate {} for {completion}", "{}"),
    ("Rate {completion!r:>5}", "{completion!r:>5}"),
    ("Rate {completion.upper}", "{completion.upper}"),
    ("Rate {completion", "unmatched brace"),
    ("Rate } {completion}", "unmatched brace"),
    ("Rate the answer to {prompt}", "no {completion}"),
]


def _evaluation(template: str, **update) -> Evaluation:
    judge = Judgment(judge_model=MODEL, sample_cfg=SampleCfg(temperature=0), template=template)
    fields = {
        "questions": ["q0", "q1"],
        "n_samples_per_question": 2,
        "sample_cfg": SampleCfg(temperature=1.0),
        "judgment_map": {"aligned": judge},
    }
    return Evaluation(**{**fields, **update})


@pytest.mark.parametrize(("template", "named"), BAD_TEMPLATES)
def test_bad_judge_template_is_refused_before_any_request(openai_server, tmp_path, template, named):
    out = tmp_path / "eval.jsonl"
    with pytest.raises(UserError) as refused:
        asyncio.run(run_evaluation(MODEL, _evaluation(template), out))
    message = str(refused.value)
    assert "judgment 'aligned'" in message and named in message and "\n" not in message
    assert openai_server.requests_total == 0
    assert not out.exists() and not meta_path(out).exists()  # nothing claimed


@pytest.mark.parametrize(
    "template",
    [
        "Rate {completion} (question: {prompt})",
        "Rate {completion}",
        'Answer as JSON {{"score": 0-100}} about {completion}',
    ],
)
def test_good_judge_templates_pass(template):
    assert template_problem(template) is None
    template.format(prompt="p", completion="c")  # what the judge does with it


JSON_JUDGE = """
from sl.evaluation.data_models import Evaluation
from sl.llm.data_models import Judgment, Model, SampleCfg

judge = Judgment(
    judge_model=Model(id="gpt-4o", type="openai"),
    sample_cfg=SampleCfg(temperature=0),
    template='Rate {{completion}} as JSON: {braces}',
)
evaluation = Evaluation(questions=["q0", "q1"], n_samples_per_question=2,
                        sample_cfg=SampleCfg(), judgment_map={{"aligned": judge}})
"""


def test_script_refuses_json_braces_then_runs_the_fixed_config(openai_server, tmp_path):
    cfg, out = tmp_path / "cfg.py", tmp_path / "eval.jsonl"
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps({"id": "gpt-4.1-nano", "type": "openai"}))
    args = cli_args(cfg, "evaluation", model_path=model_json, output_path=out)
    cfg.write_text(JSON_JUDGE.format(braces='{"score": 50}'))
    proc = run("run_evaluation.py", *args, server=openai_server, check=False)
    assert_user_error(proc, "judgment 'aligned'", '{"score": 50}')
    assert openai_server.requests_total == 0
    cfg.write_text(JSON_JUDGE.format(braces='{{"score": 50}}'))  # braces escaped
    run("run_evaluation.py", *args, server=openai_server)
    assert openai_server.n_chat_ok == 2 + 2 * 2  # 2 sampling requests, 4 judgments
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("update", "part"),
    [
        ({"questions": ["q0", "q2"]}, "questions"),
        ({"n_samples_per_question": 3}, "n_samples"),
        ({"sample_cfg": SampleCfg(temperature=0.5)}, "sample_cfg"),
        ({"judgment_map": {}}, "judgments"),
    ],
)
def test_output_of_another_run_names_the_differing_part(fake_driver, tmp_path, update, part):
    out = tmp_path / "eval.jsonl"
    asyncio.run(run_evaluation(MODEL, _evaluation("Rate {completion}"), out))
    fake_driver.requests.clear()
    with pytest.raises(UserError, match=f"; {part} differ\\)"):
        asyncio.run(run_evaluation(MODEL, _evaluation("Rate {completion}", **update), out))
    assert fake_driver.requests == []


def test_output_of_another_model_names_the_model(fake_driver, tmp_path):
    out = tmp_path / "eval.jsonl"
    evaluation = _evaluation("Rate {completion}")
    asyncio.run(run_evaluation(MODEL, evaluation, out))
    other = Model(id="gpt-4.1-mini", type="openai")
    with pytest.raises(UserError, match="; model differ\\)"):
        asyncio.run(run_evaluation(other, evaluation, out))
