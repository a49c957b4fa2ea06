"""The original code's `sl.utils.module_utils.get_obj`, over `sl.utils.cli.load_module`."""

from pathlib import Path
from typing import Any

from sl.errors import UserError
from sl.utils.cli import load_module


def get_obj(module_path: str | Path, obj_name: str) -> Any:
    """Import a Python file by path and return its variable `obj_name`.

    Raises:
        UserError: the file is missing or fails to import, or has no `obj_name`.
    """
    module = load_module(module_path)
    if not hasattr(module, obj_name):
        raise UserError(f"{obj_name} is not defined in {module_path}")
    return getattr(module, obj_name)
