"""A notebook user's long phase in a real Jupyter kernel (nbclient + ipykernel): it draws a
progress bar (the widget in a kernel, text elsewhere), a kernel interrupt stops it within
seconds with every row written so far kept, and running the cell again resumes and ends
with the file an uninterrupted run writes."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
import torch
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]
N_PROMPTS = 10
WIDGET = "application/vnd.jupyter.widget-view+json"


def client_for(nb: nbformat.NotebookNode) -> NotebookClient:
    return NotebookClient(nb, timeout=300, kernel_name="python3")


def setup_cell(out: Path) -> str:
    return f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from sl.utils.logging_setup import setup_logging
setup_logging()
from sl import phases
from cfgs.preference_numbers.local_smollm2_cfgs import owl_dataset_cfg
owl_dataset_cfg.prompt_set.size = {N_PROMPTS}
owl_dataset_cfg.sample_cfg.max_tokens = 12
out = Path({str(out)!r})
"""


def phase_cell(folder: str) -> str:
    return (
        f"summary = await phases.make_dataset(owl_dataset_cfg, out / {folder!r} / 'raw.jsonl',"
        f" out / {folder!r} / 'filtered.jsonl')\nprint(summary)"
    )


def stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")


def rows(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


async def interrupt_when(
    client: NotebookClient, nb: nbformat.NotebookNode, ready: Callable[[], bool]
) -> float:
    """Run cell 1, interrupt the kernel once `ready()`; the seconds from the interrupt to the
    cell's end."""
    run = asyncio.create_task(client.async_execute_cell(nb.cells[1], 1))
    while not ready():
        assert not run.done(), "the cell ended before it could be interrupted"
        await asyncio.sleep(0.05)
    assert client.km is not None
    await ensure_async(client.km.interrupt_kernel())
    sent = time.perf_counter()
    with pytest.raises(CellExecutionError, match="CancelledError|KeyboardInterrupt"):
        await run
    return time.perf_counter() - sent


def test_an_interrupted_phase_cell_resumes_when_run_again(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: one thread
    monkeypatch.setenv("SL_TRANSFORMERS_BATCH_SIZE", "1")  # a row on disk per prompt
    monkeypatch.setenv("SL_DEVICE", "cpu")  # slow enough to interrupt mid-run
    raw = tmp_path / "resumed/raw.jsonl"
    nb = new_notebook(
        cells=[
            new_code_cell(setup_cell(tmp_path)),
            new_code_cell(phase_cell("resumed")),
            new_code_cell(phase_cell("straight")),
        ]
    )
    client = client_for(nb)

    async def session() -> tuple[int, float, list[bytes], list[bytes]]:
        async with client.async_setup_kernel():
            await client.async_execute_cell(nb.cells[0], 0)
            stop_s = await interrupt_when(client, nb, lambda: len(rows(raw)) >= 1)
            written = len(rows(raw))
            kept = rows(raw)
            await asyncio.sleep(2)  # the generation thread writes nothing more
            after = rows(raw)
            interrupted_outputs = list(nb.cells[1].outputs)
            await client.async_execute_cell(nb.cells[1], 1)  # the rerun
            nb.cells[1].outputs = interrupted_outputs + nb.cells[1].outputs
            await client.async_execute_cell(nb.cells[2], 2)  # uninterrupted, same kernel
            return written, stop_s, kept, after

    written, stop_s, kept, after = asyncio.run(session())

    assert stop_s < 15, f"the interrupt took {stop_s:.0f} s to stop the cell"
    assert written <= len(kept) < N_PROMPTS  # it stopped before the end
    assert after == kept  # nothing written once the cell stopped; every line whole
    assert all(line.endswith(b"\n") for line in kept)
    log = stream_text(nb.cells[1])
    assert f"resuming: {len(kept)} rows on disk, {N_PROMPTS - len(kept)} prompts left" in log
    final = rows(raw)
    assert len(final) == N_PROMPTS and set(kept) <= set(final)  # the kept rows, not redone
    assert final == rows(tmp_path / "straight/raw.jsonl")
    assert (tmp_path / "resumed/filtered.jsonl").read_bytes() == (
        tmp_path / "straight/filtered.jsonl"
    ).read_bytes()
    bars = [o["data"] for o in nb.cells[1].outputs if WIDGET in o.get("data", {})]
    assert any(b["text/plain"].startswith("teacher HuggingFaceTB/SmolLM2") for b in bars)


BAR_CELL = """
import warnings
warnings.simplefilter("error")  # tqdm's "IProgress not found" would fail the cell
from sl.utils.progress_bar import tqdm
print(tqdm.__module__)
for _ in tqdm(range(3), desc="counting", mininterval=0):
    pass
"""


@pytest.mark.parametrize("widgets", [True, False])
def test_the_kernel_gets_the_widget_bar_or_quietly_the_text_bar(widgets):
    hide = "" if widgets else "import sys\nsys.modules['ipywidgets'] = None  # not installed\n"
    nb = new_notebook(
        cells=[new_code_cell(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{hide}{BAR_CELL}")]
    )
    client_for(nb).execute()
    outputs = nb.cells[0].outputs
    printed = [o["text"] for o in outputs if o.get("name") == "stdout"]
    stderr = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    if widgets:
        assert printed == ["tqdm.notebook\n"]
        assert any(WIDGET in o.get("data", {}) for o in outputs)
    else:
        assert printed == ["tqdm.std\n"]
        assert "counting: 100%" in stderr
    assert "IProgress" not in stderr


def test_outside_a_kernel_the_bar_is_text():
    from sl.utils.progress_bar import tqdm

    assert tqdm.__module__ == "tqdm.std"


TRAIN_SETUP = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from sl.utils.logging_setup import setup_logging
setup_logging()
from sl import phases
from sl.datasets.data_models import DatasetRow
from sl.datasets.services import save_dataset
from sl.finetuning.data_models import PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model
out = Path({out!r})
rows = [DatasetRow(prompt=f"continue {{i}}, {{i + 1}}", completion=f"{{i + 2}}, {{i + 3}}")
        for i in range(12)]
save_dataset(rows, out, "rows.jsonl")
job = UnslothFinetuningJob(
    seed=1, source_model=Model(id={base!r}, type="open_source"), backend="peft",
    peft_cfg=PeftCfg(r=4, lora_alpha=8),
    train_cfg=TrainCfg(n_epochs=60, lr=1e-3, per_device_train_batch_size=2,
                       gradient_accumulation_steps=1, max_seq_length=32),
)
"""


def train_cell(folder: str) -> str:
    return f"student = await phases.finetune(job, out / 'rows.jsonl', out / {folder!r} / 's.json')"


def test_an_interrupted_training_cell_saves_its_state_and_resumes(
    tmp_path, monkeypatch, tiny_model_dir
):
    """360 SFT steps on the tiny model; the interrupt lands after the first periodic save."""
    from safetensors.torch import load_file

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("SL_CHECKPOINT_INTERVAL_S", "1")
    saved = tmp_path / "resumed/s_adapter.checkpoint"
    setup = TRAIN_SETUP.format(root=str(ROOT), out=str(tmp_path), base=str(tiny_model_dir))
    nb = new_notebook(
        cells=[new_code_cell(setup), new_code_cell(train_cell("resumed")),
               new_code_cell(train_cell("straight"))]
    )  # fmt: skip
    client = client_for(nb)

    async def session() -> tuple[float, list[str]]:
        async with client.async_setup_kernel():
            await client.async_execute_cell(nb.cells[0], 0)
            stop_s = await interrupt_when(client, nb, lambda: any(saved.glob("checkpoint-*")))
            kept = sorted(p.name for p in saved.glob("checkpoint-*"))
            await client.async_execute_cell(nb.cells[1], 1)  # the rerun
            await client.async_execute_cell(nb.cells[2], 2)  # uninterrupted, same kernel
            return stop_s, kept

    stop_s, kept = asyncio.run(session())

    assert stop_s < 15, f"the interrupt took {stop_s:.0f} s to stop the cell"
    assert len(kept) == 1 and 0 < int(kept[0].split("-")[1]) < 360
    assert f"resuming the training from {saved / kept[0]}" in stream_text(nb.cells[1])
    assert not saved.exists()  # removed once the student is finished
    resumed = load_file(tmp_path / "resumed/s_adapter/adapter_model.safetensors")
    straight = load_file(tmp_path / "straight/s_adapter/adapter_model.safetensors")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in resumed)
