"""A pydantic base for config objects: unknown fields are refused with a "did you mean".

    SampleCfg(temprature=0.0)
    # ValidationError: SampleCfg has no field 'temprature': did you mean 'temperature'?

A typo'd field is never silently ignored (it would run with the default and, since output
ownership is keyed on the parsed fields, even count as an already finished run). Every float
must be finite (nan/inf are refused) and every integer must fit in 64 bits, in every config
class; fields that size work have upper bounds (`MAX_ROWS`, ...), so that a slip of the
exponent is refused in one line instead of running for hours.

Configs are editable, as in the original code: `cfg.prompt_set.size = 10` in a notebook is
validated on assignment, and a bad value is refused in one line naming the field and what it
allows (`ConfigAssignmentError`), leaving the old value in place. Hashes (`model_hash`) are
computed from the values at the time of use, so an edited config is a different run.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from typing import Any

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.fields import FieldInfo

from sl.errors import UserError

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


class ConfigAssignmentError(UserError, ValueError):
    """`config.field = value` was refused: an unknown field, or a value the field does not
    allow (the message names the field and what it allows)."""


class ConfigModel(BaseModel):
    """Base of every config object: unknown fields are an error naming the closest field;
    fields can be assigned (`cfg.size = 10`), validated on assignment.

    Subclasses that accept extra input names (e.g. the original code's field names) convert
    them in their own `mode="before"` validators, which pydantic runs before this one.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name not in cls.model_fields:
            if name.startswith("_") or isinstance(getattr(cls, name, None), property):
                return super().__setattr__(name, value)
            raise ConfigAssignmentError(
                str(UnknownFieldError(cls.__name__, name, list(cls.model_fields)))
            )
        old = vars(self)[name]
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            # A model validator that fails runs after pydantic stored the value: put it back.
            vars(self)[name] = old
            raise ConfigAssignmentError(assignment_error_line(self, name, value, e)) from None

    def model_copy(self, *, update: Any = None, deep: bool = True) -> Any:
        """A copy with `update` applied; deep by default, so that editing the copy's
        sub-configs (`copy.train_cfg.lr = ...`) leaves the original alone."""
        return super().model_copy(update=update, deep=deep)

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


def replace(config: Any, **changes: Any) -> Any:
    """A copy of `config` with `changes`, validated: what `dataclasses.replace` did on the
    original code's dataclass configs (`Cfg`, `NumsDatasetPromptSet`); works on dataclasses
    too. Sub-configs are copied, not shared with `config`."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.replace(config, **changes)
    if not isinstance(config, BaseModel):
        raise UserError(f"replace() takes a config object, not a {type(config).__name__}")
    copy = config.model_copy(deep=True)
    given = {name: getattr(copy, name) for name in copy.model_fields_set}
    try:
        return type(config).model_validate({**given, **changes})
    except ValidationError as e:
        raise ConfigAssignmentError(validation_error_line(e)) from None


def asdict(config: Any) -> dict[str, Any]:
    """The fields of `config` as a dict (sub-configs as dicts): what `dataclasses.asdict`
    did on the original code's dataclasses (`Cfg`, `CI`); works on dataclasses too."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if not isinstance(config, BaseModel):
        raise UserError(f"asdict() takes a config object, not a {type(config).__name__}")
    return config.model_dump()


def assignment_error_line(config: BaseModel, name: str, value: Any, e: ValidationError) -> str:
    """One line for a refused `config.name = value`: the field, the value, why, and what the
    field allows."""
    errors = e.errors()
    where = f"{type(config).__name__}.{name}"
    first = errors[0]
    inner = [str(p) for p in first["loc"] if not _UNION_TAG.fullmatch(str(p))]
    if inner and inner[0] == name:
        inner = inner[1:]
    error = first.get("ctx", {}).get("error")
    if isinstance(error, UnknownFieldError):
        reason = str(error)
    elif (len(errors) > 1 and not inner) or first["type"] in ("literal_error", "enum"):
        reason = ""  # a union's error per member, or a list of choices: `allowed` says it
    else:
        reason = first["msg"].removeprefix("Value error, ")
        if inner:
            reason = f"{'.'.join(inner)}: {reason}"
    field = type(config).model_fields[name]
    return (
        f"{where} = {value!r} is refused"
        + (f": {reason}" if reason else "")
        + f"; allowed: {describe_allowed(field)}"
    )


def describe_allowed(field: FieldInfo) -> str:
    """What a field accepts, in words: "an integer > 0 and <= 10000", "'openai' or
    'open_source'", "a number >= 0.0 and <= 2.0, or None"."""
    words, optional = _type_words(field.annotation)
    bounds = _constraint_words(field.metadata)
    text = words + (f" {bounds}" if bounds else "")
    return f"{text}, or None" if optional and text else text or "None"


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}
_BOUNDS = {
    annotated_types.Gt: ("gt", ">"),
    annotated_types.Ge: ("ge", ">="),
    annotated_types.Lt: ("lt", "<"),
    annotated_types.Le: ("le", "<="),
    annotated_types.MinLen: ("min_length", "at least"),
    annotated_types.MaxLen: ("max_length", "at most"),
}


def _type_words(tp: Any) -> tuple[str, bool]:
    """(`tp` in words without None, whether None is allowed)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_words(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        parts = [_type_words(a) for a in typing.get_args(tp) if a is not type(None)]
        optional = type(None) in typing.get_args(tp) or any(o for _, o in parts)
        return " or ".join(w for w, _ in parts if w), optional
    if origin is typing.Literal:
        return " or ".join(repr(v) for v in typing.get_args(tp)), None in typing.get_args(tp)
    if origin in (list, tuple, set):
        args = typing.get_args(tp)
        item = _type_words(args[0])[0] if args else ""
        return f"a list ({item} each)" if item else "a list", False
    if origin is dict:
        return "a dict", False
    if tp is type(None):
        return "", True
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " or ".join(repr(m.value) for m in tp), False
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp], False
    if isinstance(tp, type):
        return f"a {tp.__name__}", False
    return str(tp).replace("typing.", ""), False


def _constraint_words(metadata: list[Any]) -> str:
    words = []
    for item in metadata:
        for kind, (attr, op) in _BOUNDS.items():
            if isinstance(item, kind):
                words.append(f"{op} {getattr(item, attr)}")
    return " and ".join(words)


# The parts of an error location that name a member of a union type, not a field.
_UNION_TAG = re.compile(r"int|float|str|bool|list\[.*\]|literal\[.*\]|function-\w+\[.*\]")
