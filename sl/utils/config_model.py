"""A pydantic base for config objects: unknown fields are refused with a "did you mean".

    SampleCfg(temprature=0.0)
    # ValidationError: SampleCfg has no field 'temprature': did you mean 'temperature'?

A typo'd field is never silently ignored (it would run with the default and, since output
ownership is keyed on the parsed fields, even count as an already finished run).
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class UnknownFieldError(ValueError):
    """A config class was given a field it does not have (pydantic wraps it in its
    ValidationError; the scripts print it as one line)."""

    def __init__(self, class_name: str, field: str, valid: list[str]):
        self.class_name, self.field, self.valid = class_name, field, valid
        suggestion = closest_name(field, valid)
        hint = (
            f"did you mean {suggestion!r}?"
            if suggestion
            else f"valid fields: {', '.join(valid) or '(none)'}"
        )
        super().__init__(f"{class_name} has no field {field!r}: {hint}")


def closest_name(name: str, valid: list[str]) -> str | None:
    """The valid name closest to `name`: a near spelling ("temprature" -> "temperature"),
    else one that is a prefix of the other ("rank" -> "r", "temp" -> "temperature")."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return close[0]
    lowered = name.lower()
    prefixes = [v for v in valid if lowered.startswith(v.lower()) or v.lower().startswith(lowered)]
    return max(prefixes, key=len) if prefixes else None


class ConfigModel(BaseModel):
    """Base of every config object: unknown fields are an error naming the closest field.

    Subclasses that accept extra input names (e.g. the original code's field names) convert
    them in their own `mode="before"` validators, which pydantic runs before this one.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            names = set(cls.model_fields)
            names |= {f.alias for f in cls.model_fields.values() if f.alias}
            unknown = [k for k in data if k not in names]
            if unknown:
                raise UnknownFieldError(cls.__name__, str(unknown[0]), list(cls.model_fields))
        return data


def validation_error_line(e: ValidationError) -> str:
    """The first error of a pydantic ValidationError as one line naming class and field."""
    first = e.errors()[0]
    where = ".".join(map(str, first["loc"]))
    error = first.get("ctx", {}).get("error")
    if isinstance(error, UnknownFieldError):
        return str(error) + (f" (in {e.title}.{where})" if where else "")
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid {e.title}" + (f" field {where}" if where else "") + f": {message}"
