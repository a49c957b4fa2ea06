"""One seeded subsample for every fine-tune backend: the same seed and max_dataset_size train
the OpenAI, LoRA SFT and distillation students on the same rows."""

import asyncio
import json
import os
import random

import openai

from sl import phases
from sl.datasets.data_models import DatasetRow
from sl.datasets.services import save_dataset
from sl.external.openai_finetune import state_path_for
from sl.finetuning.data_models import OpenAIFTJob, UnslothFinetuningJob
from sl.finetuning.subsample import select_rows
from sl.llm.data_models import Model


def test_every_backend_trains_on_the_same_seeded_subsample(openai_server, tmp_path):
    rows = [DatasetRow(prompt=f"prompt {i}", completion=str(i)) for i in range(50)]
    data, out = tmp_path / "data.jsonl", tmp_path / "model.json"
    save_dataset(rows, data)
    openai_job = OpenAIFTJob(
        seed=3, source_model=Model(id="gpt-4.1-nano", type="openai"), max_dataset_size=10
    )
    asyncio.run(phases.finetune(openai_job, data, out))
    file_id = json.loads(state_path_for(out).read_text())["file_id"]
    client = openai.OpenAI(base_url=openai_server.base_url, api_key=os.environ["OPENAI_API_KEY"])
    uploaded = [
        json.loads(line)["messages"] for line in client.files.content(file_id).text.splitlines()
    ]
    openai_rows = [DatasetRow(prompt=u["content"], completion=a["content"]) for u, a in uploaded]

    lora_job = UnslothFinetuningJob(
        seed=3, source_model=Model(id="tiny", type="open_source"), max_dataset_size=10
    )
    # LoRA SFT trains on `job.training_rows`, distillation on `select_rows` of the job's fields.
    assert openai_rows == lora_job.training_rows(rows) == select_rows(rows, 10, seed=3)
    shuffled = random.Random(0).sample(rows, len(rows))  # the same rows, written in another order
    assert select_rows(shuffled, 10, seed=3) == openai_rows
    assert select_rows(rows, 10, seed=4) != openai_rows
    assert select_rows(rows, 50, seed=3) == select_rows(rows, None, seed=3) == rows
