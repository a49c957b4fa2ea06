"""The console shows our messages at its level and each warning once; the run log file gets
everything at DEBUG, including what dependencies say (warnings, stdlib logging)."""

import logging
import warnings
from pathlib import Path

import pytest
from loguru import logger

import sl
from sl.utils.logging_setup import log_file, setup_logging


@pytest.fixture(autouse=True)
def _every_warning(restore_logging):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield


def test_debug_lines_go_to_the_file_not_the_console(capfd, tmp_path: Path) -> None:
    setup_logging("INFO")
    path = tmp_path / "logs" / "run.log"
    with log_file(path):
        logger.debug("the detail line")
        logger.info("the summary line")
    out, err = capfd.readouterr()
    assert "the summary line" in err and "the detail line" not in out + err
    text = path.read_text()
    assert "DEBUG" in text and "the detail line" in text and "the summary line" in text
    with log_file(path):  # a resumed run appends
        logger.info("after the resume")
    assert path.read_text().startswith(text) and "after the resume" in path.read_text()


def test_a_dependency_warning_lands_in_the_file_not_the_console(capfd, tmp_path: Path) -> None:
    import loguru as dependency

    setup_logging("INFO")
    path = tmp_path / "run.log"
    with log_file(path):
        warnings.warn_explicit("its internals moved", UserWarning, dependency.__file__, 7)
        warnings.warn_explicit("old api", FutureWarning, sl.__file__, 3)  # ours, deprecation
        warnings.warn_explicit("check the folder", UserWarning, sl.__file__, 5)  # ours
        logging.getLogger("urllib3.connectionpool").warning("retrying the connection")
        logging.getLogger("urllib3.connectionpool").error("the server is gone")
    err = capfd.readouterr().err
    for quiet in ("its internals moved", "old api", "retrying the connection"):
        assert quiet not in err and quiet in path.read_text()
    assert "check the folder" in err and "the server is gone" in err


def test_a_repeated_warning_is_shown_once(capfd, tmp_path: Path) -> None:
    setup_logging("INFO")
    with log_file(tmp_path / "run.log"):
        for _ in range(3):
            logger.warning("Hub unreachable: using the offline copy")
    assert capfd.readouterr().err.count("Hub unreachable") == 1
    assert (tmp_path / "run.log").read_text().count("Hub unreachable") == 3


def test_secrets_are_masked_in_the_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    setup_logging("INFO")
    with log_file(tmp_path / "run.log"):
        logger.debug("calling with key sk-test-0123456789abcdef")
    text = (tmp_path / "run.log").read_text()
    assert "calling with key ***" in text and "0123456789abcdef" not in text


def test_an_error_traceback_goes_to_the_file_only(capfd, tmp_path: Path) -> None:
    setup_logging("INFO")
    with pytest.raises(ValueError), log_file(tmp_path / "run.log"):
        raise ValueError("the step broke")
    assert "Traceback" not in capfd.readouterr().err
    text = (tmp_path / "run.log").read_text()
    assert "stopped by" in text and "ValueError: the step broke" in text
