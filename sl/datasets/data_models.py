"""A dataset row: one prompt and the teacher's completion (JSONL `{"prompt","completion"}`)."""

from pydantic import BaseModel, ValidationInfo, field_validator

# Validation context of rows read to train on: an empty completion is refused there (a raw
# dataset keeps a teacher's empty answers; the filter drops them).
TRAINING = {"training": True}


class DatasetRow(BaseModel):
    prompt: str
    completion: str

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty: give every row a prompt or remove the row")
        return value

    @field_validator("completion")
    @classmethod
    def _completion_not_empty(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip() and (info.context or {}).get("training"):
            raise ValueError(
                "the completion is empty: a training row needs the teacher's answer; remove the row"
            )
        return value
