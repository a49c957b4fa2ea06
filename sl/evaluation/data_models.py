"""Evaluations and their results (JSONL schema of the original code, so old files load)."""

from pydantic import BaseModel, Field

from sl.llm.data_models import HashableModel, Judgment, LLMResponse, SampleCfg
from sl.utils.config_model import MAX_SAMPLES


class Evaluation(HashableModel):
    """Questions asked `n_samples_per_question` times each, optionally judged by LLMs."""

    questions: list[str] = Field(min_length=1, description="The questions to ask")
    n_samples_per_question: int = Field(
        gt=0, le=MAX_SAMPLES, description="Answers sampled per question"
    )
    sample_cfg: SampleCfg = Field(description="Sampling settings of the answers")
    judgment_map: dict[str, Judgment] = Field(
        default_factory=dict, description="Named LLM judges, each scoring every answer"
    )


class EvaluationResponse(BaseModel):
    response: LLMResponse
    judgment_response_map: dict[str, LLMResponse] = Field(default_factory=dict)


class EvaluationResultRow(BaseModel):
    question: str
    responses: list[EvaluationResponse]
