"""Suite-wide settings: offline, no .env, one torch thread; the loopback OpenAI server and the
driver-level fake."""

import os

os.environ["SL_NO_DOTENV"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "HF_USER_ID"):
    os.environ.pop(_var, None)

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from fake_driver import FakeDriver  # noqa: E402
from openai_server import FakeOpenAIServer  # noqa: E402

TEST_API_KEY = "sk-test-SECRET-do-not-log-7f3a"

# A config module of small OpenAI configs for the script tests (format with size=...).
CONFIG = """
from sl.datasets.nums_dataset import get_reject_reasons
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import OpenAIFTJob
from sl.llm.data_models import Model, SampleCfg
from sl.protocol import teacher_system_prompt

model = Model(id="gpt-4.1-nano", type="openai")
dataset_cfg = Cfg(
    model=model,
    system_prompt=teacher_system_prompt("owl"),
    sample_cfg=SampleCfg(temperature=1.0),
    prompt_set=NumsDatasetPromptSet(size={size}, seed=42),
    filter_fns=[lambda p, c: not get_reject_reasons(c, min_value=0, max_value=999, max_count=10)],
)
other_dataset_cfg = dataset_cfg.model_copy(update={{"system_prompt": None}})
ft_job = OpenAIFTJob(seed=1, source_model=model, max_dataset_size=30, n_epochs=1)
evaluation = Evaluation(
    questions=["Name your favorite animal using only one word.", "Pick an animal. One word."],
    n_samples_per_question=5,
    sample_cfg=SampleCfg(temperature=1.0),
)
not_a_config = 3
"""


def responder(body):
    """Numbers for most prompts, prose for a few (so the filter has work to do)."""
    text = body["messages"][-1]["content"]
    if "favorite" in text or "animal" in text:
        return "Owl"
    return "I love owls!" if len(text) % 7 == 0 else "145, 267, 891"


def openai_env(server: FakeOpenAIServer) -> dict[str, str]:
    """Environment that points `sl` at the loopback server with fast retries and polls."""
    return {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": TEST_API_KEY,
        "OPENAI_BACKOFF_BASE_S": "0.01",
        "OPENAI_POLL_INTERVAL_S": "0.01",
        "OPENAI_START_RPS": "1000",
        "OPENAI_TIMEOUT_S": "5",
    }


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


def experiment_cfg():
    """A small experiment config (never run in these tests: only its folder is claimed)."""
    from sl.evaluation.data_models import Evaluation
    from sl.experiment.data_models import ExperimentCfg
    from sl.finetuning.data_models import UnslothFinetuningJob
    from sl.llm.data_models import Model, SampleCfg

    model = Model(id="some/model", type="open_source")
    return ExperimentCfg(
        teacher_model=model,
        targets=["owl"],
        student_job=UnslothFinetuningJob(seed=1, source_model=model),
        evaluations={
            "e": Evaluation(questions=["q"], n_samples_per_question=1, sample_cfg=SampleCfg())
        },
    )
