"""The saved parts of an unfinished evaluation, so that a rerun pays only for what is missing.

Every sampling request's answers and every single judgment are appended to
`<output>.parts.jsonl` the moment they arrive (one JSON line each, flushed). The first line
names the run they belong to. Rows of the results file are assembled from these parts once
every part of a question is there; the file is removed when the results file is finished.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from sl.errors import UserError
from sl.llm.data_models import LLMResponse
from sl.utils.file_utils import JsonlAppender, read_jsonl


class _Header(BaseModel):
    kind: Literal["run"] = "run"
    run: str  # the key of the evaluation run (model and evaluation hash)


class SampleRecord(BaseModel):
    """The answers of one sampling request: samples `first_sample` onwards of a question."""

    kind: Literal["sample"] = "sample"
    question_index: int
    question: str
    request: int  # index of the request among the question's requests
    first_sample: int
    responses: list[LLMResponse]


class JudgmentRecord(BaseModel):
    """One judgment of one sample."""

    kind: Literal["judgment"] = "judgment"
    question_index: int
    question: str
    sample: int
    judgment: str
    response: LLMResponse


class _Line(RootModel):
    root: Annotated[_Header | SampleRecord | JudgmentRecord, Field(discriminator="kind")]


def parts_path(output: Path) -> Path:
    return output.with_name(output.name + ".parts.jsonl")


class PartStore:
    """The parts saved so far (loaded from `path` if it exists) and appended as they come;
    without a path they are kept in memory only.

    Raises:
        UserError: the parts file belongs to another evaluation run.
    """

    def __init__(self, path: Path | None, run: str):
        self.path = path
        self.samples: dict[tuple[int, int], list[LLMResponse]] = {}  # (question, request)
        self.judgments: dict[tuple[int, int, str], LLMResponse] = {}  # (question, sample, name)
        self._appender: JsonlAppender | None = None
        if path is None:
            return
        lines = read_jsonl(path, _Line, allow_partial_last=True) if path.exists() else []
        if lines and not (isinstance(lines[0].root, _Header) and lines[0].root.run == run):
            raise UserError(
                f"{path} holds saved answers of another evaluation: delete it to start over",
                path=path,
            )
        for line in lines[1:]:
            self._index(line.root)
        self._appender = JsonlAppender(path)
        if not lines:
            self._appender.append(_Header(run=run))

    def add(self, record: SampleRecord | JudgmentRecord) -> None:
        """Save one part (flushed to disk before this returns)."""
        if self._appender is not None:
            self._appender.append(record)
        self._index(record)

    def _index(self, record: _Header | SampleRecord | JudgmentRecord) -> None:
        if isinstance(record, SampleRecord):
            self.samples[(record.question_index, record.request)] = record.responses
        elif isinstance(record, JudgmentRecord):
            key = (record.question_index, record.sample, record.judgment)
            self.judgments[key] = record.response

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None

    def remove(self) -> None:
        """Delete the parts file (its content is in the finished results file)."""
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
