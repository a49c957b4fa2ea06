"""A dataset row: one prompt and the teacher's completion (JSONL `{"prompt","completion"}`)."""

from pydantic import BaseModel


class DatasetRow(BaseModel):
    prompt: str
    completion: str
