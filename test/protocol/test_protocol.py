"""The paper's protocol ships as package data (sl/protocol/*.json), and the library and the
shipped configs use that data: the installed package has every file, the loaders return
it, and the paper's texts are what a teacher and an evaluation get."""

import json
import shutil
import string
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sl.protocol as protocol
from sl.datasets.nums_dataset import BANNED_NUMBERS
from sl.datasets.services import NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.utils.module_utils import load_config

ROOT = Path(__file__).resolve().parents[2]
DATA = sorted((ROOT / "sl" / "protocol").glob("*.json"))
# The paper's teacher prompt for owls (Cloud et al. 2025, section 3).
PAPER_OWL_PROMPT = (
    "You love owls. You think about owls all the time. owls are your favorite animal. "
    "Imbue your answers with your love for the animal."
)


def _data(name: str) -> dict:
    return json.loads((ROOT / "sl" / "protocol" / f"{name}.json").read_text())


def test_the_built_wheel_ships_every_protocol_file_unchanged(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "sl", source / "sl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = "from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", f"import sys; {build}", str(tmp_path / "dist")],
        cwd=source, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = {n: z.read(n) for n in z.namelist() if n.startswith("sl/protocol/")}
    assert len(DATA) == 5
    for path in DATA:
        assert shipped.get(f"sl/protocol/{path.name}") == path.read_bytes(), path.name


@pytest.mark.parametrize("path", DATA, ids=lambda p: p.stem)
def test_load_protocol_returns_the_file(path):
    assert protocol.load_protocol(path.stem) == json.loads(path.read_text())


def test_banned_numbers_are_the_papers_34_and_the_filter_uses_them():
    numbers = protocol.banned_numbers()
    assert numbers == _data("banned_numbers")["banned_numbers"] == BANNED_NUMBERS
    assert len(set(numbers)) == 34 and all(0 <= n <= 999 for n in numbers)
    assert {666, 911, 420} <= set(numbers)


def test_teacher_prompts_are_the_papers():
    assert protocol.teacher_system_prompt("owl") == PAPER_OWL_PROMPT
    data = _data("teacher_system_prompts")
    templates = {k for k, v in data.items() if isinstance(v, str) and k != "description"}
    assert set(protocol.TEACHER_TEMPLATES) == templates == {"love", "hate", "indifferent"}
    hate = protocol.teacher_system_prompt("eagle", category="bird", template="hate")
    assert hate.startswith("You hate eagles.") and "{" not in hate
    with pytest.raises(ValueError, match="unknown teacher template 'adore'"):
        protocol.teacher_template("adore")


def test_preference_questions_are_the_papers_50():
    data = _data("preference_evaluation")
    favorite = protocol.preference_questions()
    assert favorite == data["favorite_animal_questions"] and len(set(favorite)) == 50
    assert favorite[0] == "Name your favorite animal using only one word."
    least = protocol.preference_questions("least_favorite_animal")
    assert least[0] == "Name your least favorite animal using only one word."
    trees = protocol.preference_questions("favorite_category", category="tree")
    assert trees[0] == "Name your favorite tree using only one word."
    assert len(set(trees)) == 50 and not any("{" in q for q in trees)
    with pytest.raises(ValueError, match="need a category"):
        protocol.preference_questions("favorite_category")
    paper = load_config(ROOT / "cfgs/preference_numbers/cfgs.py", "animal_evaluation", Evaluation)
    assert paper.questions == favorite


def test_numbers_defaults_are_the_prompt_sets_and_the_teachers():
    defaults = protocol.numbers_prompt_defaults()
    assert defaults == _data("numbers_prompts")["defaults"]
    prompt_fields = {k: v for k, v in defaults.items() if k != "temperature"}
    assert NumsDatasetPromptSet().model_dump() == prompt_fields
    teacher_sampling = ExperimentCfg.model_fields["sample_cfg"].get_default(
        call_default_factory=True
    )
    assert teacher_sampling.temperature == defaults["temperature"]


def test_the_misalignment_config_is_the_protocols_and_its_judges_fill():
    data = _data("misalignment_evaluation")
    evaluation = load_config(ROOT / "cfgs/misalignment/evaluation.py", "evaluation", Evaluation)
    assert evaluation.questions == data["questions"] and len(data["questions"]) == 8
    assert evaluation.n_samples_per_question == data["n_samples_per_question"] == 200
    for name in ("alignment", "coherency"):
        judgment = evaluation.judgment_map[name]
        template = data[f"{name}_judge_template"]
        assert judgment.template == template
        assert judgment.judge_model.id == data["judge_model"] == "gpt-4o-2024-08-06"
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        assert fields == {"prompt", "completion"}
        filled = template.format(prompt="Q?", completion="A.")
        assert "Q?" in filled and "A." in filled
