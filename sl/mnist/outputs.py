"""Output folder of an MNIST run: checked before training, written atomically after it."""

import json
import tempfile
from pathlib import Path
from typing import Any

from sl.errors import UserError
from sl.mnist.config import MnistConfig
from sl.utils.file_utils import write_json_atomic

RESULTS_NAME = "results.json"
BARS_NAME = "mnist_aux_bars_m{m}.png"  # one per m
VS_AUX_NAME = "mnist_accuracy_vs_m.png"


def prepare_output_dir(out_dir: Path, cfg: MnistConfig) -> None:
    """Create `out_dir` and make sure a run with `cfg` may write there.

    Raises:
        UserError: the path is a file, cannot be written, or holds a results.json of a
            different config (which is never overwritten).
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
    existing = out_dir / RESULTS_NAME
    if existing.exists():
        try:
            old_cfg = json.loads(existing.read_text()).get("config")
        except (OSError, ValueError, AttributeError):
            old_cfg = None
        if old_cfg != cfg.model_dump(mode="json"):
            raise UserError(
                f"{out_dir} already holds {RESULTS_NAME} of a different config; "
                "choose a new folder (it is not overwritten)",
                path=out_dir,
            )


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
