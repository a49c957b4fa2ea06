"""Stable fingerprints of callables (e.g. dataset filters), so that they can be part of the
config hash that owns an output.

A pydantic model (like `NumbersFilter`) is fingerprinted by its type and fields; a plain
function or lambda by its code (bytecode, constants, names), defaults, the values it closes
over and the plain values of the globals it reads; a `functools.partial` by its function and
arguments. Two filters that decide alike may still differ (e.g. a reformatted lambda): that
only costs a re-filtering, never a wrong reuse.
"""

import functools
import hashlib
import json
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_PLAIN = (int, float, str, bytes, bool, type(None))


def _value(value: Any, depth: int) -> str:
    if depth > 4:
        return type(value).__qualname__
    if isinstance(value, _PLAIN):
        return repr(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return f"{type(value).__name__}[{','.join(_value(v, depth + 1) for v in items)}]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_value(v, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):
        try:
            return f"{type(value).__qualname__}({value.model_dump_json()})"
        except ValueError:  # fields pydantic cannot serialize (e.g. callables)
            return f"{type(value).__qualname__}(?)"
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    if callable(value):
        return _callable(value, depth + 1)
    return f"{type(value).__qualname__}:{value!r}"


def _code(code: types.CodeType, depth: int) -> str:
    consts = [
        _code(c, depth + 1) if isinstance(c, types.CodeType) else _value(c, depth + 1)
        for c in code.co_consts
    ]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}|{code.co_varnames}"


def is_library(module_name: str) -> bool:
    """Whether a module is installed code (sl, the standard library, site-packages), which
    a fingerprint names, rather than the user's (config modules), which it hashes."""
    if module_name.split(".")[0] == "sl":
        return True
    file = getattr(sys.modules.get(module_name), "__file__", None)
    if file is None:
        return True  # built in
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(Path(file).resolve().is_relative_to(Path(r).resolve()) for r in roots)


def _callable(fn: Callable[..., Any], depth: int = 0) -> str:
    if isinstance(fn, BaseModel):
        return _value(fn, depth)
    if isinstance(fn, functools.partial):
        return (
            f"partial({_callable(fn.func, depth + 1)},{_value(list(fn.args), depth + 1)},"
            f"{_value(dict(fn.keywords), depth + 1)})"
        )
    if isinstance(fn, types.BuiltinFunctionType):
        return f"builtin {getattr(fn, '__module__', '')}.{fn.__qualname__}"
    if isinstance(fn, types.FunctionType):
        if depth > 0 and fn.__module__ and is_library(fn.__module__):
            # A library function called by a filter: its name is enough.
            return f"function {fn.__module__}.{fn.__qualname__}"
        code = fn.__code__
        referenced = {
            name: _value(fn.__globals__[name], depth + 1)
            for name in code.co_names
            if name in fn.__globals__
        }
        cells = [_value(c.cell_contents, depth + 1) for c in fn.__closure__ or ()]
        return (
            f"function {fn.__qualname__}|{_code(code, depth)}|{_value(fn.__defaults__, depth)}|"
            f"{_value(fn.__kwdefaults__, depth)}|{cells}|{referenced}"
        )
    if isinstance(fn, types.MethodType):
        return f"method {_callable(fn.__func__, depth + 1)} of {_value(fn.__self__, depth + 1)}"
    state = vars(fn) if hasattr(fn, "__dict__") else {}
    return f"object {type(fn).__module__}.{type(fn).__qualname__}{_value(state, depth + 1)}"


def json_hash(value: Any) -> str:
    """A short hash of a JSON-able value (keys sorted), stable across processes."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def callables_hash(fns: Iterable[Callable[..., Any]]) -> str:
    """A short hash of a list of callables, stable across processes for the same code."""
    blob = "\n".join(_callable(fn) for fn in fns)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
