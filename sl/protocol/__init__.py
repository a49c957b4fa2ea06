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


def teacher_system_prompt(target: str, category: str = "animal", template: str = "love") -> str:
    """The paper's teacher system prompt ("love", "hate" or "indifferent") for a target."""
    prompts = load_protocol("teacher_system_prompts")
    if template not in ("love", "hate", "indifferent"):
        raise ValueError(f"unknown teacher template {template!r}: use love, hate or indifferent")
    return prompts[template].format(target=target, category=category)


def preference_questions(kind: str = "favorite_animal", category: str | None = None) -> list[str]:
    """The 50 evaluation questions: "favorite_animal", "least_favorite_animal", or
    "favorite_category" (templates filled with `category`, e.g. "tree")."""
    data = load_protocol("preference_evaluation")
    if kind == "favorite_category":
        if category is None:
            raise ValueError("favorite_category questions need a category")
        return [t.format(category=category) for t in data["favorite_category_question_templates"]]
    return list(data[f"{kind}_questions"])
