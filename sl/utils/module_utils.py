"""Python files loaded by path: config modules, and the original code's `get_obj`.

    from sl.utils.module_utils import load_config
    cfg = load_config("cfgs/preference_numbers/cfgs.py", "owl_dataset_cfg", Cfg)

A config module inside a package (like `cfgs/`, whose folders hold `__init__.py`) is
imported by its package name (`cfgs.experiments.local_smollm2`), so config modules can import
each other as a package (`from cfgs.preference_numbers import cfgs`); any other file is run
under a private module name. `load_config` also overrides fields (`field.path=value`, the
scripts' `--set`). Errors are one line naming the file (a config module's path), the variable
or the override; the scripts add the flags (`--config_module`, `--cfg_var_name`, default `cfg`, `--set`).
"""

import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sl.errors import UserError
from sl.utils.config_model import UnknownFieldError, validation_error_line
from sl.utils.optional_deps import install_hint

T = TypeVar("T")
# The variable the scripts load when `--cfg_var_name` is not given (the original scripts' default).
DEFAULT_VAR_NAME = "cfg"


def exec_file(path: Path, module_name: str, *, register: bool = False) -> ModuleType:
    """Run the Python file `path` as a module named `module_name`; with `register`, keep it
    in `sys.modules` (so that it is imported once per process, and pickles can find it).

    Errors raised by the file propagate unchanged (a failed registered module is dropped).

    Raises:
        UserError: `path` cannot be loaded as a Python module.
    """
    if register and module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path}: not a Python file", path=path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if register:
            del sys.modules[module_name]
        raise
    return module


def package_module_name(path: Path) -> tuple[Path, str] | None:
    """For a file inside a package: (the folder above the package, its dotted name);
    None for a file whose folder has no `__init__.py`."""
    path = path.resolve()
    names, folder = [path.stem], path.parent
    while (folder / "__init__.py").is_file():
        names.insert(0, folder.name)
        folder = folder.parent
    return (folder, ".".join(names)) if len(names) > 1 else None


def _import_config_file(path: Path) -> ModuleType:
    """Import `path` by its package name when it is in a package (run again on each call,
    as a notebook expects after an edit), else run it as a private module."""
    package = package_module_name(path)
    if package is None:
        return exec_file(path, f"sl_cfg_{path.stem}")
    root, name = package
    if str(root) not in sys.path:
        sys.path.append(str(root))
    loaded = sys.modules.get(name)
    module = importlib.reload(loaded) if loaded is not None else importlib.import_module(name)
    if Path(module.__file__ or "").resolve() != path.resolve():
        # Another package of that name comes first on sys.path: run the file itself.
        return exec_file(path, f"sl_cfg_{path.stem}")
    return module


def load_module(config_module: str | Path) -> ModuleType:
    """Import a Python file (a config module) by path.

    Raises:
        UserError: the file is missing, fails to import, or exits (`sys.exit`, even with 0)
            while being imported (about `config_module`: its message starts with the path,
            see `UserError.path`).
    """
    path = Path(config_module)
    if not path.is_file():
        raise UserError(f"{config_module}: file not found", path=config_module)
    try:
        return _import_config_file(path)
    except UserError:
        raise
    except ValidationError as e:
        raise UserError(
            f"{config_module}: {validation_error_line(e)}", path=config_module
        ) from None
    except SystemExit as e:
        raise UserError(
            f"{config_module} called sys.exit({e.code!r}) while being imported: a config "
            "module must only define its configs (guard scripts with "
            "`if __name__ == '__main__':`)",
            path=config_module,
        ) from None
    except Exception as e:
        hint = install_hint(e.name) if isinstance(e, ModuleNotFoundError) else None
        message = hint or (str(e).splitlines()[0] if str(e) else "")
        raise UserError(
            f"{config_module} failed to import: {type(e).__name__}: {message}", path=config_module
        ) from None


def module_variable(module: ModuleType, var_name: str, expected: type[T], where: str | Path) -> T:
    """`module`'s variable `var_name` (the module loaded from `where`), checked by type.

    Raises:
        UserError: no such variable (listing those of the expected type), or another type;
            the message starts with `var_name`'s value, `UserError.param` is "var_name".
    """
    if not hasattr(module, var_name):
        names = sorted(n for n, v in vars(module).items() if isinstance(v, expected))
        listed = expected is not object and names
        raise UserError(
            f"{var_name} is not defined in {where}"
            + (f"; {expected.__name__} variables there: {', '.join(names)}" if listed else ""),
            param="var_name",
        )
    value = getattr(module, var_name)
    if not isinstance(value, expected):
        raise UserError(
            f"{var_name} in {where} is a {type(value).__name__}, "
            f"but this needs a {expected.__name__}",
            param="var_name",
        )
    return value


def load_config(
    config_module: str | Path, var_name: str, expected: type[T], overrides: Sequence[str] = ()
) -> T:
    """Import a config module from its file path and return `var_name`, checked by type, with
    `overrides` (`field.path=value`, see `override_fields`) applied.

    Raises:
        UserError: about the file (`load_module`), the variable (`module_variable`) or an
            override (`override_fields`).
    """
    config = module_variable(load_module(config_module), var_name, expected, config_module)
    return override_fields(config, overrides)


def override_fields(config: T, overrides: Sequence[str]) -> T:
    """`config` (a pydantic model) with each `field.path=value` of `overrides` set, in order.

    The value is read as JSON when it parses (`5`, `null`, `[1, 2]`, `"5"`), else as a
    string (`You love owls.`). Every model on the path is validated again with the new value,
    as if the config module had given it (fields it did not give keep their defaults); a dict
    field is entered by key (`evaluations.animal.n_samples_per_question=10`).

    Raises:
        UserError: not `field.path=value`, an unknown field or key, or a value the model
            refuses; the message starts with the override, `UserError.param` is "overrides".
    """
    for override in overrides:
        path, sep, text = override.partition("=")
        fields = path.split(".")
        if not sep or not all(fields):
            raise UserError(
                f"{override}: give field.path=value (e.g. prompt_set.size=100)", param="overrides"
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        try:
            config = _with_field(config, fields, value, [])
        except ValidationError as e:
            raise UserError(f"{override}: {validation_error_line(e)}", param="overrides") from None
        except (UserError, ValueError) as e:
            raise UserError(f"{override}: {e}", param="overrides") from None
    return config


def _with_field(obj: Any, fields: list[str], value: Any, done: list[str]) -> Any:
    """`obj` with the field at `fields` (below `done`, the path so far) set to `value`."""
    name, rest = fields[0], fields[1:]
    if isinstance(obj, BaseModel):
        names = list(type(obj).model_fields)
        if name not in names:
            raise UnknownFieldError(type(obj).__name__, name, names)
        given = {field: getattr(obj, field) for field in obj.model_fields_set}
        given[name] = _with_field(getattr(obj, name), rest, value, [*done, name]) if rest else value
        return type(obj).model_validate(given)
    if isinstance(obj, dict):
        if name not in obj:
            keys = ", ".join(map(str, obj)) or "(none)"
            raise ValueError(f"{'.'.join(done)} has no key {name!r}: keys: {keys}")
        return {**obj, name: _with_field(obj[name], rest, value, [*done, name]) if rest else value}
    raise ValueError(
        f"{'.'.join(done) or 'the config'} is a {type(obj).__name__}, not a config object: "
        "set it whole (a JSON value)"
    )


def get_obj(module_path: str | Path, obj_name: str) -> Any:
    """The original code's `get_obj`: import a Python file by path, return `obj_name`.

    Raises:
        UserError: the file is missing or fails to import, or has no `obj_name`.
    """
    return load_config(module_path, obj_name, object)
