"""Client side of the Modal deployment (beside `modal_app.py`): check the scripts' paths,
copy files to and from the Volume, call a function of `modal_app.py`.

The `scripts/modal_*.py` scripts run the functions in an ephemeral app (`app.run()`), so the
code and cfgs/ shipped are always those of the working tree; no `modal deploy` is needed.
The names of the app, the volume and the secret are `modal_app`'s (SL_MODAL_APP,
SL_MODAL_VOLUME, SL_MODAL_SECRET).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from sl.errors import UserError
from sl.llm.data_models import Model
from sl.llm.engines import engine_of
from sl.phase_commands import PhaseCommand
from sl.utils.module_utils import exec_file
from sl.utils.optional_deps import install_hint

REPO_ROOT = Path(__file__).resolve().parent
NOT_CONFIGURED = (
    "Modal is not configured: run `modal token new` (or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)"
)


def load_modal_app() -> ModuleType:
    """`modal_app.py` (the module Modal ships to the containers), imported from its path
    beside this file once per process."""
    try:
        import modal  # noqa: F401
    except ImportError:
        raise UserError(str(install_hint("modal"))) from None
    path = REPO_ROOT / "modal_app.py"
    if "modal_app" not in sys.modules and not path.exists():
        raise UserError(f"{path} not found: run from a clone of the repo")
    return exec_file(path, "modal_app", register=True)


def repo_config_path(config_module: str) -> str:
    """The config module as a path relative to the repo root, checked to be under cfgs/
    (the only config folder shipped to Modal).

    Raises:
        UserError: about `config_module` (see `UserError.path`).
    """
    path = Path(config_module).resolve()
    if not path.is_file():
        raise UserError(f"{config_module}: file not found", path=config_module)
    cfgs = REPO_ROOT / "cfgs"
    if not path.is_relative_to(cfgs):
        raise UserError(
            f"{config_module}: on Modal, config modules must live under {cfgs} "
            "(only cfgs/ is shipped): move or copy it there",
            path=config_module,
        )
    return path.relative_to(REPO_ROOT).as_posix()


def volume_path(path: str, what: str) -> str:
    """`path` checked to be relative to the Volume root (`modal_app.volume_relative`); an
    error names `what` gave it (a flag, or REMOTE)."""
    app = load_modal_app()
    try:
        return app.volume_relative(path)
    except UserError as e:
        raise UserError(f"{what} {e}") from None


def add_artifact_flags(parser: argparse.ArgumentParser, name: str, what: str) -> None:
    """`--{name}_path` (a path on the volume) and the original scripts' `--{name}_filename`."""
    parser.add_argument(f"--{name}_path", help=f"{what}: path on the volume")
    parser.add_argument(
        f"--{name}_filename", help="The original scripts' flag: a file name in its folder"
    )


def artifact_path(args: argparse.Namespace, name: str, folder: str, default: str | None) -> str:
    """The volume path of an artifact from `--{name}_path`, else `--{name}_filename` (a file
    in `folder/`, where the original scripts kept it), else `default`.

    Raises:
        UserError: both flags given, neither given without a default, or a bad path.
    """
    path, filename = getattr(args, f"{name}_path"), getattr(args, f"{name}_filename")
    if path and filename:
        raise UserError(f"give --{name}_path or --{name}_filename, not both")
    if filename:
        path = f"{folder}/{filename}"
    if not path:
        if default is None:
            volume = load_modal_app().VOLUME_NAME
            raise UserError(f"--{name}_path is required: a path on the {volume} volume")
        path = default
    return volume_path(path, f"--{name}_path")


def volume_paths(command: PhaseCommand, args: argparse.Namespace) -> dict[str, str]:
    """The volume path of each file of a phase command (`artifact_path`: outputs default to
    `<cfg_var_name>/<file>`), by its argument's name.

    Raises:
        UserError: a bad path, a missing input, or two files at one path.
    """
    paths: dict[str, str] = {}
    for arg in command.paths:
        default = f"{args.cfg_var_name}/{arg.default}" if arg.default else None
        path = artifact_path(args, arg.name.removesuffix("_path"), arg.folder, default)
        same = [name for name, given in paths.items() if given == path]
        if same:
            raise UserError(f"--{same[0]} and --{arg.name} must differ")
        paths[arg.name] = path
    return paths


def needs_gpu(models: Iterable[Model]) -> bool:
    """Whether any of these models runs on a local engine (vLLM, Unsloth): the GPU image."""
    return any(engine_of(m).runs_locally for m in models)


@contextmanager
def modal_errors() -> Iterator[None]:
    """Turn Modal's missing/invalid credential errors into one-line `UserError`s."""
    from modal.exception import AuthError

    try:
        yield
    except AuthError:
        raise UserError(NOT_CONFIGURED) from None


def read_volume_text(path: str) -> str:
    """Read a small text file (e.g. a model JSON) from the Volume."""
    app = load_modal_app()
    with modal_errors():
        try:
            data = b"".join(app.volume.read_file(path))
        except FileNotFoundError:
            raise UserError(
                f"{path} is not on the {app.VOLUME_NAME} volume: "
                f"upload it with `python scripts/modal_volume.py upload LOCAL {path}`"
            ) from None
    return data.decode()


def upload(local: Path, remote: str, force: bool = False) -> int:
    """Upload a file or a folder to the Volume; return the number of files sent.

    Raises:
        UserError: `local` missing, or a file already on the Volume (without `force`).
    """
    app = load_modal_app()
    remote = volume_path(remote, "REMOTE")
    if not local.exists():
        raise UserError(f"LOCAL {local}: no such file or folder")
    files = [p for p in local.rglob("*") if p.is_file()] if local.is_dir() else [local]
    with modal_errors():
        try:
            with app.volume.batch_upload(force=force) as batch:
                if local.is_dir():
                    batch.put_directory(str(local), remote)
                else:
                    batch.put_file(str(local), remote)
        except FileExistsError as e:
            raise UserError(f"REMOTE {remote}: {e}; pass --force to overwrite") from None
    return len(files)


def download(remote: str, local: Path, force: bool = False) -> int:
    """Download a file or a folder of the Volume; return the number of files written.

    Each file is written to a temporary name and renamed, so an interrupted download never
    leaves a truncated file under its real name.

    Raises:
        UserError: `remote` missing, or a local file in the way (without `force`).
    """
    from modal.types import FileEntryType

    app = load_modal_app()
    remote = volume_path(remote, "REMOTE")
    with modal_errors():
        try:
            entries = [e for e in app.volume.listdir(remote, recursive=True)]
        except FileNotFoundError:
            entries = []
        files = [e for e in entries if e.type == FileEntryType.FILE]
        if not files:
            raise UserError(f"REMOTE {remote}: not on the {app.VOLUME_NAME} volume")
        single = len(files) == 1 and files[0].path.strip("/") == remote.strip("/")
        targets = {
            e.path: local if single else local / Path(e.path).relative_to(remote.strip("/"))
            for e in files
        }
        clash = [t for t in targets.values() if t.exists()]
        if clash and not force:
            raise UserError(f"LOCAL {clash[0]} already exists: pass --force to overwrite")
        for path, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            with tmp.open("wb") as f:
                for chunk in app.volume.read_file(path):
                    f.write(chunk)
            tmp.replace(target)
    return len(targets)


def list_volume(remote: str = "/") -> list[str]:
    """`path<TAB>size` of each entry of a Volume folder (not recursive)."""
    from modal.types import FileEntryType

    app = load_modal_app()
    path = "/" if remote in ("", "/") else volume_path(remote, "REMOTE")
    with modal_errors():
        try:
            entries = app.volume.listdir(path)
        except FileNotFoundError:
            raise UserError(f"REMOTE {remote}: not on the {app.VOLUME_NAME} volume") from None
    return [
        f"{e.path}/" if e.type == FileEntryType.DIRECTORY else f"{e.path}\t{e.size}"
        for e in entries
    ]


def call_remote(function_name: str, *args: Any, detach: bool = False) -> Any:
    """Run `modal_app.<function_name>.remote(*args)` in an ephemeral app; return its result.

    Args:
        function_name: a function of modal_app.py, e.g. "generate_dataset_gpu".
        *args: its arguments.
        detach: keep the app running if this client disconnects (stop it with
            `modal app stop <SL_MODAL_APP>`).

    Raises:
        UserError: Modal not configured, or a user error raised inside the container.
    """
    import modal

    app = load_modal_app()
    function = getattr(app, function_name)
    with modal_errors(), modal.enable_output(), app.app.run(detach=detach):
        result = function.remote(*args)
    if isinstance(result, app.PhaseFailed):
        raise UserError(result.message, path=result.path)
    return result
