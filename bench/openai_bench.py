"""What the OpenAI benches share: the loopback server of test/helpers with sl pointed at it,
the model they sample, and sl's driver answering a list of prompts.

Imported by bench/bench_openai_*.py (a module, not a bench).
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test" / "helpers"))
os.environ["SL_NO_DOTENV"] = "1"

from openai_server import FakeOpenAIServer  # noqa: E402

from sl.llm import services as llm  # noqa: E402
from sl.llm.data_models import Model, SampleCfg  # noqa: E402
from sl.llm.driver import SampleError  # noqa: E402

MODEL = Model(id="gpt-4.1-nano", type="openai")


@contextmanager
def loopback_server(**settings: Any) -> Iterator[FakeOpenAIServer]:
    """The loopback OpenAI server with `settings` (e.g. `latency_s`), sl's driver pointed at it."""
    with FakeOpenAIServer(**settings) as server:
        os.environ.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="bench")
        yield server


async def sl_answered(prompts: list[str]) -> int:
    """How many of `prompts` sl's driver answered (requests still failing after its retries
    are counted, not raised)."""
    chats = [llm.build_simple_chat(p) for p in prompts]
    try:
        return len(await llm.batch_sample(MODEL, chats, SampleCfg()))
    except SampleError as e:
        return len(prompts) - len(e.failures)
