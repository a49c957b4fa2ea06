"""A pydantic base for config objects: unknown fields are refused with a "did you mean".

    SampleCfg(temprature=0.0)
    # ValidationError: SampleCfg has no field 'temprature': did you mean 'temperature'?

A typo'd field is never silently ignored (it would run with the default and, since output
ownership is keyed on the parsed fields, even count as an already finished run). Every float
must be finite (nan/inf are refused) and every integer must fit in 64 bits, in every config
class; fields that size work have upper bounds (`MAX_ROWS`, ...), so that a slip of the
exponent is refused in one line instead of running for hours.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# Upper bounds of fields that size work: far above any real run, far below a hang.
MAX_ROWS = 10_000_000  # prompts, dataset rows
MAX_LIST = 1_000  # numbers in one prompt or answer
MAX_SAMPLES = 100_000  # samples per question, completions per prompt
MAX_TOKENS = 1_000_000  # tokens of one completion or training example
MAX_EPOCHS = 1_000
MAX_BATCH = 1_000_000  # rows or images per batch
_INT64 = 2**63 - 1


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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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

    @model_validator(mode="after")
    def _check_int_range(self) -> Any:
        for name in type(self).model_fields:
            value = getattr(self, name)
            for v in value if isinstance(value, list | tuple) else [value]:
                if type(v) is int and abs(v) > _INT64:  # bools are ints too: not these
                    raise ValueError(f"{name}={v} is out of range: integers must fit in 64 bits")
        return self


def validation_error_line(e: ValidationError) -> str:
    """The first error of a pydantic ValidationError as one line naming class and field (and
    the number given, when it was a number)."""
    first = e.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if not _UNION_TAG.fullmatch(str(part)))
    error = first.get("ctx", {}).get("error")
    if isinstance(error, UnknownFieldError):
        return str(error) + (f" (in {e.title}.{where})" if where else "")
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if isinstance(given, int | float) and not isinstance(given, bool) and str(given) not in message:
        message += f" (got {given!r})"
    return f"invalid {e.title}" + (f" field {where}" if where else "") + f": {message}"


# The parts of an error location that name a member of a union type, not a field.
_UNION_TAG = re.compile(r"int|float|str|bool|list\[.*\]|literal\[.*\]|function-\w+\[.*\]")
