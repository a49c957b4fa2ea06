"""The paper's published protocol (Cloud et al. 2025), shipped as JSON package data."""

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_protocol(name: str) -> dict[str, Any]:
    """Load `sl/protocol/<name>.json` (e.g. "numbers_prompts", "banned_numbers")."""
    text = resources.files("sl.protocol").joinpath(f"{name}.json").read_text()
    return json.loads(text)


def banned_numbers() -> list[int]:
    """The 34 numbers with negative associations used in the misalignment experiments."""
    return list(load_protocol("banned_numbers")["banned_numbers"])


# The named teacher system prompt templates of teacher_system_prompts.json.
TEACHER_TEMPLATES = ("love", "hate", "indifferent")


def teacher_template(name: str) -> str:
    """A named teacher system prompt template, with {target} and {category} unfilled."""
    if name not in TEACHER_TEMPLATES:
        raise ValueError(f"unknown teacher template {name!r}: use {', '.join(TEACHER_TEMPLATES)}")
    return load_protocol("teacher_system_prompts")[name]


def teacher_system_prompt(target: str, category: str = "animal", template: str = "love") -> str:
    """The paper's teacher system prompt ("love", "hate" or "indifferent") for a target."""
    return teacher_template(template).format(target=target, category=category)


def numbers_prompt_defaults() -> dict[str, Any]:
    """The paper's numbers-prompt settings (prompt count, seed, example and answer ranges):
    the defaults of `NumsDatasetPromptSet`."""
    return dict(load_protocol("numbers_prompts")["defaults"])


def preference_questions(kind: str = "favorite_animal", category: str | None = None) -> list[str]:
    """The 50 evaluation questions: "favorite_animal", "least_favorite_animal", or
    "favorite_category" (templates filled with `category`, e.g. "tree")."""
    data = load_protocol("preference_evaluation")
    if kind == "favorite_category":
        if category is None:
            raise ValueError("favorite_category questions need a category")
        return [t.format(category=category) for t in data["favorite_category_question_templates"]]
    return list(data[f"{kind}_questions"])
