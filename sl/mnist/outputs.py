"""Output folder of an MNIST run: guarded while it trains, written atomically after it."""

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sl.errors import UserError
from sl.mnist.config import MnistConfig
from sl.utils.artifact import Artifact, artifact
from sl.utils.file_utils import write_json_atomic
from sl.utils.run_meta import read_meta

RESULTS_NAME = "results.json"
BARS_NAME = "mnist_aux_bars_m{m}.png"  # one per m
VS_AUX_NAME = "mnist_accuracy_vs_m.png"


def prepare_output_dir(out_dir: Path) -> None:
    """Create `out_dir` and make sure it is a writable folder.

    Raises:
        UserError: the path is a file or cannot be written.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; pass a folder", path=out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise UserError(
            f"{out_dir} is not writable ({e.strerror}); pick another", path=out_dir
        ) from None


@contextmanager
def results_artifact(out_dir: Path, cfg: MnistConfig) -> Iterator[Artifact]:
    """Guard `out_dir/results.json` for `cfg` (`sl.utils.artifact`): one run per folder at a
    time; results of another config, or plots this run would overwrite that sl did not make
    there, are refused."""

    def same_config(path: Path) -> bool:  # results written before they had a meta
        try:
            return json.loads(path.read_text()).get("config") == cfg.model_dump(mode="json")
        except (OSError, ValueError, AttributeError):
            return False

    results = out_dir / RESULTS_NAME
    if read_meta(results) is None and not results.exists():  # no run of sl wrote here yet
        foreign = [p.name for p in _plot_paths(cfg, out_dir) if p.exists()]
        if foreign:
            raise UserError(
                f"{out_dir} already holds {foreign[0]}, not made by sl: choose a new folder "
                "(it is not overwritten)",
                path=out_dir,
            )
    key = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]
    with artifact(results, key, "MNIST results", adopt=same_config) as out:
        yield out


def _plot_paths(cfg: MnistConfig, out_dir: Path) -> list[Path]:
    paths = [out_dir / BARS_NAME.format(m=m) for m in cfg.n_aux]
    return paths + ([out_dir / VS_AUX_NAME] if len(cfg.n_aux) > 1 else [])


def write_outputs(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write results.json, a bar chart per m and, for several m, accuracy against m.

    Returns:
        The paths written.
    """
    from sl.mnist.plot import plot_bars, plot_vs_aux

    n = results["config"]["n_models"]
    paths = [out_dir / RESULTS_NAME]
    write_json_atomic(paths[0], results)
    for run in results["runs"]:
        paths.append(out_dir / BARS_NAME.format(m=run["n_aux"]))
        plot_bars(run["summary"], run["n_aux"], n, paths[-1])
    if len(results["runs"]) > 1:
        paths.append(out_dir / VS_AUX_NAME)
        plot_vs_aux(results["runs"], n, paths[-1])
    return paths
