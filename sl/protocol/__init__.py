"""The paper's published protocol (Cloud et al. 2025), shipped as JSON package data."""

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_protocol(name: str) -> dict[str, Any]:
    """Load `sl/protocol/<name>.json` (e.g. "numbers_prompts", "banned_numbers")."""
    text = resources.files(__package__).joinpath(f"{name}.json").read_text()
    return json.loads(text)


def banned_numbers() -> list[int]:
    """The 34 numbers with negative associations used in the misalignment experiments."""
    return list(load_protocol("banned_numbers")["banned_numbers"])
