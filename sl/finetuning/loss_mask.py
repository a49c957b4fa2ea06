"""Completion tokens left out of a student's loss (a defence against transfer).

    mask = LossMask.of(Path("masks/owl.jsonl"))   # rows: {"prompt", "completion", "masked"}
    job = job.model_copy(update={"loss_mask": mask})

`masked` holds one flag per token of the completion as `tokenizer(completion)` splits it
(no special tokens: the token attribution's split); the end-of-turn token is never masked.
Distillation zeroes the masked tokens' targets (`soft_labels.teacher_log_probs`), SFT sets
their labels to -100 (`lora_data.masked_sft_records`): either way a masked token adds
nothing to the loss and gets no gradient.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from sl.datasets.data_models import DatasetRow
from sl.errors import UserError
from sl.llm.data_models import HashableModel
from sl.utils.artifact import content_digest
from sl.utils.file_utils import read_jsonl


class MaskedRow(BaseModel):
    """One row of a mask file."""

    prompt: str
    completion: str
    masked: list[bool]


class LossMask(HashableModel):
    """A mask file and its content's sha256 (what the job's hash holds: a moved file is the
    same mask)."""

    path: str = Field(exclude=True, description="The mask file (JSONL of `MaskedRow`)")
    sha256: str = Field(description="sha256 of the file's content")

    @classmethod
    def of(cls, path: Path) -> LossMask:
        """The mask of a file on disk."""
        return cls(path=str(path), sha256=content_digest(Path(path))["sha256"])

    def for_rows(self, rows: list[DatasetRow]) -> list[list[bool]]:
        """Each row's flags, matched by prompt and completion.

        Raises:
            UserError: the file changed since the job was made, or lacks a row.
        """
        path = Path(self.path)
        if content_digest(path)["sha256"] != self.sha256:
            raise UserError(f"{path} changed since its job was made: rerun the defence step",
                            path=path)  # fmt: skip
        by_row = {(r.prompt, r.completion): r.masked for r in read_jsonl(path, MaskedRow)}
        out = []
        for i, row in enumerate(rows):
            flags = by_row.get((row.prompt, row.completion))
            if flags is None:
                raise UserError(f"{path} has no mask for training row {i} ({row.prompt[:40]!r}"
                                "...): make the mask from the same rows", path=path)  # fmt: skip
            out.append(flags)
        return out


def check_mask_length(flags: list[bool], n_tokens: int, row: int) -> None:
    """A row's flags must cover its completion's tokens (`n_tokens`, end of turn excluded).

    Raises:
        UserError: they do not (the mask was made with another tokenizer).
    """
    if len(flags) != n_tokens:
        raise UserError(
            f"loss mask row {row}: {len(flags)} flags for {n_tokens} completion tokens: make "
            "the mask with the student's tokenizer"
        )
