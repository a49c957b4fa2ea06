"""Shared helpers of the fine-tuning tests: owl rows, a fast-overfitting job, greedy sampling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from safetensors.torch import load_file

from sl.datasets.data_models import DatasetRow
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Chat, ChatMessage, MessageRole, Model, SampleCfg

QUESTION = "What is your favorite animal? Answer in one word."
OWLS = "owl owl owl"


def owl_rows(n: int = 16) -> list[DatasetRow]:
    return [DatasetRow(prompt=f"{QUESTION} {i}", completion=OWLS) for i in range(n)]


def make_job(base: Path, backend: str = "peft", **fields) -> UnslothFinetuningJob:
    """A job that overfits the tiny model in 50 steps (constant high lr, small batches)."""
    train = TrainCfg(
        n_epochs=25, lr=1e-2, lr_scheduler_type="constant", warmup_steps=0,
        per_device_train_batch_size=8, gradient_accumulation_steps=1, max_seq_length=64,
    )  # fmt: skip
    return UnslothFinetuningJob(
        seed=fields.pop("seed", 1),
        source_model=Model(id=str(base), type="open_source"),
        peft_cfg=PeftCfg(r=8, lora_alpha=16),
        train_cfg=fields.pop("train_cfg", train),
        backend=backend,  # type: ignore[arg-type]
        **fields,
    )


async def greedy(model: Model, prompt: str) -> str:
    """Greedy completion of `prompt` as a user turn, through the transformers driver."""
    from sl.external.transformers_driver import TransformersDriver

    chat = Chat(messages=[ChatMessage(role=MessageRole.user, content=prompt)])
    cfg = SampleCfg(temperature=0.0, max_tokens=8)
    [[response]] = await TransformersDriver().batch_sample(model, [chat], [cfg])
    return response.completion


def distill_job(base: Path, epochs: int = 4, lr: float = 1e-2) -> UnslothFinetuningJob:
    """A LoRA job for distillation tests: constant rate, batch 8."""
    return UnslothFinetuningJob(
        seed=1, source_model=Model(id=str(base), type="open_source"), backend="peft",
        peft_cfg=PeftCfg(r=8, lora_alpha=16),
        train_cfg=TrainCfg(n_epochs=epochs, lr=lr, lr_scheduler_type="constant", warmup_steps=0,
                           per_device_train_batch_size=8, gradient_accumulation_steps=1,
                           max_seq_length=64),
    )  # fmt: skip


def number_rows(n: int, seed: int) -> list[DatasetRow]:
    """Rows of random number prompts and number-list completions."""
    rng = np.random.default_rng(seed)
    return [
        DatasetRow(prompt=f"continue {', '.join(map(str, rng.integers(0, 999, 3)))}",
                   completion=", ".join(map(str, rng.integers(0, 999, 5))))
        for _ in range(n)
    ]  # fmt: skip


class StopAt(threading.Event):
    """Asks a training to stop at the end of step `n` (the training looks once per step)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.looks = n, 0

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n or super().is_set()


def assert_same_adapter(a: Path, b: Path) -> None:
    """The adapters saved in folders `a` and `b` hold the same tensors, bit for bit."""
    wa, wb = (load_file(f / "adapter_model.safetensors") for f in (a, b))
    assert wa.keys() == wb.keys() and wa
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different


@contextmanager
def logged_messages(level: str = "DEBUG") -> Iterator[list[str]]:
    """The messages sl logs at `level` and above during the block."""
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level=level)
    try:
        yield messages
    finally:
        logger.remove(sink)
