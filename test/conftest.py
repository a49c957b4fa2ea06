"""Suite-wide settings: offline, no .env, one torch thread; the loopback OpenAI server, the
driver-level fake, and the tiny random open models (built once per session)."""

import os

os.environ["SL_NO_DOTENV"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "HF_USER_ID"):
    os.environ.pop(_var, None)

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from fake_driver import FakeDriver  # noqa: E402
from openai_server import FakeOpenAIServer  # noqa: E402
from script_runner import CONFIG, TEST_API_KEY, openai_env  # noqa: E402
from tiny_model import build_numbers_model, build_tiny_lora, build_tiny_model  # noqa: E402


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """A fresh loopback OpenAI server, with the environment pointing `sl` at it."""
    from sl.external import openai_driver

    with FakeOpenAIServer(require_api_key=TEST_API_KEY) as server:
        for key, value in openai_env(server).items():
            monkeypatch.setenv(key, value)
        openai_driver._DRIVERS.clear()
        yield server
        openai_driver._DRIVERS.clear()


@pytest.fixture
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDriver]:
    """A `FakeDriver` answering for OpenAI models in this process (no HTTP): for tests that
    only need some model to answer. OPENAI_BASE_URL points at a closed port, so a request
    that still goes over HTTP (fine-tuning, the Batch API) fails at once."""
    from sl.llm.services import register_driver

    driver = FakeDriver()
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    previous = register_driver("openai", lambda: driver)
    yield driver
    if previous is not None:
        register_driver("openai", previous)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture
def cfg_file(tmp_path):
    """A config module of small OpenAI configs (see script_runner.CONFIG)."""
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG.format(size=60))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama chat model folder (tokenizer + ChatML template with generation marks)."""
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter (rank 8, nonzero weights) whose base is `tiny_model_dir`."""
    return build_tiny_lora(tiny_model_dir, tmp_path_factory.getbasetemp() / "tiny-lora")


@pytest.fixture(scope="session")
def numbers_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model fine-tuned to answer with a number list (teachers' rows pass the filter)."""
    return build_numbers_model(tiny_model_dir, tmp_path_factory.getbasetemp() / "numbers-base")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that set up logging (`setup_logging`, a script's `run_script`): afterwards,
    the standard library's root handlers and level as they were, and loguru back to one
    DEBUG sink on stderr."""
    import logging

    from loguru import logger

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers = handlers
    root.setLevel(level)
    logger.remove()
    logger.add(_to_stderr, level="DEBUG")


def _to_stderr(message: str) -> None:
    import sys

    sys.stderr.write(message)  # looked up per message: each test's captured stderr
