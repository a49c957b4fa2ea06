"""The original code's public names (issue #23): the ones notebooks use resolve at their
original path, renamed ones resolve at their new name, and docs/compat.md lists them all
with a status that still holds."""

import re
from pathlib import Path

from original_surface import NEW_NAMES, ORIGINAL_NAMES, resolves, status

DOC = Path(__file__).resolve().parents[2] / "docs" / "compat.md"

# The names issue #23 found missing, which notebooks use.
NOTEBOOK_NAMES = [
    "sl.utils.stats_utils.compute_ci_df",
    "sl.datasets.nums_dataset.format_numbers",
    "sl.datasets.nums_dataset.extract_format_suffix",
    "sl.datasets.nums_dataset.replace_numbers",
    "sl.datasets.nums_dataset.CLAUDE_EVIL_NUMBERS",
    "sl.datasets.nums_dataset.GPT_EVIL_NUMBERS",
    "sl.external.openai_driver.get_client",
    "sl.external.openai_driver.upload_file",
    "sl.utils.list_utils.flatten",
    "sl.utils.list_utils.batch",
    "sl.finetuning.services.dataset_row_to_chat",
    "sl.external.hf_driver.push",
    "sl.external.hf_driver.download_model",
]


def test_the_list_is_the_original_surface():
    assert len(ORIGINAL_NAMES) == len(set(ORIGINAL_NAMES)) == 188
    assert set(NEW_NAMES) <= set(ORIGINAL_NAMES)


def test_names_notebooks_use_resolve_at_their_original_path():
    assert set(NOTEBOOK_NAMES) <= set(ORIGINAL_NAMES)
    assert [n for n in NOTEBOOK_NAMES if not resolves(n)] == []
    assert not resolves("sl.utils.list_utils.no_such_name")  # the check can fail


def test_new_names_resolve():
    assert [new for new in NEW_NAMES.values() if not resolves(new)] == []


def test_compat_doc_lists_every_name_with_a_status_that_holds():
    rows = dict(
        re.findall(r"^\| `([\w.]+)` \| (compatible|new name|missing) \|", DOC.read_text(), re.M)
    )
    assert set(rows) == set(ORIGINAL_NAMES)
    # A name the doc calls compatible must still be; one it calls missing may have come back.
    worse = [n for n, s in rows.items() if s == "compatible" and status(n)[0] != "compatible"]
    assert worse == []
