"""Resolving model ids to folders, and pushing to the Hub only with a token."""

from pathlib import Path

import pytest

from sl.errors import UserError
from sl.external.hf_hub import push_to_hub, resolve_model_path


def test_local_folder_passes_through(tiny_model_dir: Path):
    assert resolve_model_path(str(tiny_model_dir)) == tiny_model_dir


@pytest.mark.parametrize("name", ["/no/such/model", "./missing-model", "~/missing-model-xyz"])
def test_missing_local_path_names_it(name: str):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_path(name)


def test_missing_folder_under_existing_parent(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(UserError, match="models/student does not exist"):
        resolve_model_path("models/student")


def test_uncached_repo_offline_says_how_to_fix(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(UserError, match="not in the local HF cache and the Hub is unreachable"):
        resolve_model_path("some-org/some-model-not-cached")


def test_invalid_repo_id(monkeypatch):
    with pytest.raises(UserError, match="neither a local folder nor a valid Hub repo id"):
        resolve_model_path("bad name with spaces")


def test_push_skipped_without_token(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert push_to_hub(tmp_path, "student") is None


def test_push_with_token_needs_user(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    monkeypatch.delenv("HF_USER_ID", raising=False)
    with pytest.raises(UserError, match="HF_USER_ID"):
        push_to_hub(tmp_path, "student")


def test_the_offline_copy_warning_comes_once_per_process(monkeypatch):
    from loguru import logger

    from sl.external import hf_hub
    from sl.external.embedded_model import EMBEDDED_MODEL_ID, embedded_model_dir

    monkeypatch.setattr(hf_hub, "_hub_unreachable", False)  # as in a fresh process
    records: list[str] = []
    sink = logger.add(lambda m: records.append(m.record["message"]), level="DEBUG")
    try:
        folders = [resolve_model_path(EMBEDDED_MODEL_ID) for _ in range(3)]
    finally:
        logger.remove(sink)
    if folders[0] != embedded_model_dir():
        pytest.skip("the Hub's copy is in this machine's HF cache: no fallback to test")
    assert folders == [embedded_model_dir()] * 3
    assert sum(m.startswith("Hub unreachable: using the offline copy") for m in records) == 1
    assert sum(m.startswith("Hub unreachable for") for m in records) == 1  # one try only
