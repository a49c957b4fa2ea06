"""Config modules import each other as the `cfgs` package; hashing needs no special case."""

import sys
from pathlib import Path

from sl.datasets.services import Cfg
from sl.utils.fingerprint import callables_hash, is_library
from sl.utils.module_utils import load_config, load_module

ROOT = Path(__file__).resolve().parents[2]

HELPER = """
LIMIT = {limit}


def small(text):
    return len(text) < LIMIT
"""

FILTERS = """
from mycfgs.helpers import small

filters = [lambda prompt, completion: small(completion)]
"""


def test_cfgs_modules_are_the_package_modules():
    grid = load_module(ROOT / "cfgs/experiments/transfer_grid.py")
    assert grid.__name__ == "cfgs.experiments.transfer_grid"
    main = sys.modules["cfgs.experiments.local_smollm2"]
    assert grid._main_job is main  # imported as a package, not loaded a second time by path
    assert main._phases is sys.modules["cfgs.preference_numbers.local_smollm2_cfgs"]
    cfg = load_config(ROOT / "cfgs/preference_numbers/cfgs.py", "owl_dataset_cfg", Cfg)
    assert cfg.prompt_set.size == 30_000


def test_user_package_code_is_hashed_by_code_and_reloaded_after_an_edit(tmp_path):
    package = tmp_path / "mycfgs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text(HELPER.format(limit=10))
    (package / "filters.py").write_text(FILTERS)
    first = load_module(package / "filters.py")
    assert first.__name__ == "mycfgs.filters" and not is_library("mycfgs.helpers")
    before = callables_hash(first.filters)

    (package / "helpers.py").write_text(HELPER.format(limit=11))  # a constant of a helper
    del sys.modules["mycfgs.helpers"]
    again = load_module(package / "filters.py")  # run again, as a notebook expects
    assert again.filters[0]("p", "x" * 10) is True
    assert callables_hash(again.filters) != before
    assert is_library("json") and is_library("sl.datasets.nums_dataset")
