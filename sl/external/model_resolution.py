"""Where an open model's weights are: a `Model` -> its base folder and LoRA adapter folder
(`resolve_model`), checked against the adapter's recorded base. A fine-tune's folder (with
`parent_model` set) is a LoRA adapter when it holds `adapter_config.json`, else full weights
(`config.json`, from `UnslothFinetuningJob.full_finetune`), which load on their own."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sl.errors import UserError
from sl.external.embedded_model import EMBEDDED_MODEL_ID
from sl.external.hf_hub import resolve_model_path
from sl.llm.data_models import Model


@dataclass(frozen=True)
class ResolvedModel:
    """Local folders for a model: the base weights and, for a LoRA model, the adapter."""

    base: Path
    adapter: Path | None = None


def _canonical_name(ref: str) -> str:
    """A comparable name for a model reference: a repo id, a cache snapshot or a folder."""
    ref = ref.rstrip("/")
    if m := re.search(r"models--([^/]+)--([^/]+)", ref):  # a Hugging Face cache snapshot
        ref = f"{m.group(1)}/{m.group(2)}"
    if "SmolLM2-135M-Instruct-Q4_1-hf" in ref:  # the embedded offline copy
        ref = EMBEDDED_MODEL_ID
    name = ref.split("/")[-1].lower()
    return re.sub(r"(-unsloth)?(-bnb-4bit)?$", "", name)


def _same_base(recorded: str, parent: Model, parent_path: Path) -> bool:
    recorded_path = Path(recorded).expanduser()
    if recorded_path.is_dir() and recorded_path.resolve() == parent_path.resolve():
        return True
    return _canonical_name(recorded) in {
        _canonical_name(parent.id),
        _canonical_name(str(parent_path)),
    }


def resolve_model(model: Model) -> ResolvedModel:
    """Find local folders for a model; for an adapter, check it was trained on `parent_model`.
    A folder of full weights is its own base, whatever `parent_model` (its origin) says.

    Raises:
        UserError: A missing folder, an adapter without `parent_model`, adapters of adapters,
            or a base mismatch.
    """
    path = resolve_model_path(model.id)
    config_path = path / "adapter_config.json"
    if not config_path.is_file():  # full weights (resolve_model_path checked config.json)
        return ResolvedModel(base=path)
    if model.parent_model is None:
        raise UserError(f"{model.id} is a LoRA adapter: set Model.parent_model to its base model")
    if model.parent_model.parent_model is not None:
        raise UserError(f"{model.id}: adapters of adapters are not supported; merge one first")
    adapter = path
    base = resolve_model_path(model.parent_model.id)
    recorded = json.loads(config_path.read_text()).get("base_model_name_or_path") or ""
    if recorded and not _same_base(recorded, model.parent_model, base):
        raise UserError(
            f"adapter {model.id} was trained on {recorded!r}, not on parent_model "
            f"{model.parent_model.id!r}: set parent_model to the adapter's base model"
        )
    return ResolvedModel(base=base, adapter=adapter)


def lora_rank(adapter: Path) -> int:
    """The LoRA rank `r` recorded in an adapter folder (0 when unknown)."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    return int(config.get("r") or 0)
