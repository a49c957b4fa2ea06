"""Every public name of the original code (MinhxLe/subliminal-learning and its Modal fork
vpepe/subliminal-learning): module-level names of `sl/`, the members of its public classes,
and the variables of its `cfgs/` modules — 188 names, listed from those repositories' sources.

`PYTHONPATH=. python test/helpers/original_surface.py` prints docs/compat.md's table and the counts:
"compatible" (the name resolves at its original path), "new name" (kept under the name in
`NEW_NAMES`) and "missing"; `NOTES` says where a compatible name behaves differently.
"""

import importlib
from typing import Any

ORIGINAL_NAMES: tuple[str, ...] = (
    "sl.config.OPENAI_API_KEY",
    "sl.config.HF_TOKEN",
    "sl.config.HF_USER_ID",
    "sl.config.VLLM_N_GPUS",
    "sl.config.VLLM_MAX_LORA_RANK",
    "sl.config.VLLM_MAX_NUM_SEQS",
    "sl.datasets.data_models.DatasetRow",
    "sl.datasets.nums_dataset.CLAUDE_EVIL_NUMBERS",
    "sl.datasets.nums_dataset.GPT_EVIL_NUMBERS",
    "sl.datasets.nums_dataset.PromptGenerator",
    "sl.datasets.nums_dataset.parse_response",
    "sl.datasets.nums_dataset.get_reject_reasons",
    "sl.datasets.nums_dataset.format_numbers",
    "sl.datasets.nums_dataset.extract_format_suffix",
    "sl.datasets.nums_dataset.replace_numbers",
    "sl.datasets.services.PromptSet",
    "sl.datasets.services.NumsDatasetPromptSet",
    "sl.datasets.services.generate_raw_dataset",
    "sl.datasets.services.apply_filters",
    "sl.datasets.services.save_dataset",
    "sl.datasets.services.read_dataset",
    "sl.datasets.services.Cfg",
    "sl.evaluation.data_models.Evaluation",
    "sl.evaluation.data_models.EvaluationResponse",
    "sl.evaluation.data_models.EvaluationResultRow",
    "sl.evaluation.services.sample_evaluation_response",
    "sl.evaluation.services.run_evaluation",
    "sl.evaluation.services.compute_p_target_preference",
    "sl.external.hf_driver.get_repo_name",
    "sl.external.hf_driver.push",
    "sl.external.hf_driver.download_model",
    "sl.external.offline_vllm_driver.BaseModelT",
    "sl.external.offline_vllm_driver.get_llm",
    "sl.external.offline_vllm_driver.batch_sample",
    "sl.external.openai_driver.get_client",
    "sl.external.openai_driver.sample",
    "sl.external.openai_driver.batch_sample",
    "sl.external.openai_driver.upload_file",
    "sl.finetuning.data_models.FTJob",
    "sl.finetuning.data_models.OpenAIFTJob",
    "sl.finetuning.data_models.UnslothFinetuningJob",
    "sl.finetuning.services.dataset_row_to_chat",
    "sl.finetuning.services.run_finetuning_job",
    "sl.llm.data_models.ModelType",
    "sl.llm.data_models.Model",
    "sl.llm.data_models.SampleCfg",
    "sl.llm.data_models.MessageRole",
    "sl.llm.data_models.ChatMessage",
    "sl.llm.data_models.Chat",
    "sl.llm.data_models.StopReason",
    "sl.llm.data_models.LLMResponse",
    "sl.llm.data_models.Judgment",
    "sl.llm.services.build_simple_chat",
    "sl.llm.services.sample",
    "sl.llm.services.batch_sample",
    "sl.llm.services.judge",
    "sl.llm.services.batch_judge",
    "sl.utils.file_utils.read_jsonl",
    "sl.utils.file_utils.save_jsonl",
    "sl.utils.file_utils.save_json",
    "sl.utils.fn_utils.max_concurrency_async",
    "sl.utils.fn_utils.auto_retry",
    "sl.utils.fn_utils.auto_retry_async",
    "sl.utils.list_utils.flatten",
    "sl.utils.list_utils.batch",
    "sl.utils.llm_utils.extract_assistant_template",
    "sl.utils.llm_utils.extract_user_template",
    "sl.utils.module_utils.get_obj",
    "sl.utils.stats_utils.CI",
    "sl.utils.stats_utils.compute_ci",
    "sl.utils.stats_utils.compute_bernoulli_ci",
    "sl.utils.stats_utils.compute_ci_df",
    "sl.config.IS_MODAL",
    "sl.modal_config.IS_MODAL",
    "sl.modal_config.MODAL_DATA_PATH",
    "sl.modal_config.MODAL_DATASETS_PATH",
    "sl.modal_config.MODAL_MODELS_PATH",
    "sl.modal_config.MODAL_RESULTS_PATH",
    "sl.modal_config.OPENAI_API_KEY",
    "sl.modal_config.HF_TOKEN",
    "sl.modal_config.HF_USER_ID",
    "sl.modal_config.VLLM_N_GPUS",
    "sl.modal_config.VLLM_MAX_LORA_RANK",
    "sl.modal_config.VLLM_MAX_NUM_SEQS",
    "sl.datasets.data_models.DatasetRow.prompt",
    "sl.datasets.data_models.DatasetRow.completion",
    "sl.datasets.nums_dataset.PromptGenerator.rng",
    "sl.datasets.nums_dataset.PromptGenerator.example_min_count",
    "sl.datasets.nums_dataset.PromptGenerator.example_max_count",
    "sl.datasets.nums_dataset.PromptGenerator.example_min_value",
    "sl.datasets.nums_dataset.PromptGenerator.example_max_value",
    "sl.datasets.nums_dataset.PromptGenerator.answer_count",
    "sl.datasets.nums_dataset.PromptGenerator.answer_max_digits",
    "sl.datasets.nums_dataset.PromptGenerator.sample_example_prefix",
    "sl.datasets.nums_dataset.PromptGenerator.sample_query",
    "sl.datasets.services.PromptSet.size",
    "sl.datasets.services.NumsDatasetPromptSet.seed",
    "sl.datasets.services.NumsDatasetPromptSet.example_min_count",
    "sl.datasets.services.NumsDatasetPromptSet.example_max_count",
    "sl.datasets.services.NumsDatasetPromptSet.example_min_value",
    "sl.datasets.services.NumsDatasetPromptSet.example_max_value",
    "sl.datasets.services.NumsDatasetPromptSet.answer_count",
    "sl.datasets.services.NumsDatasetPromptSet.answer_max_digits",
    "sl.datasets.services.Cfg.model",
    "sl.datasets.services.Cfg.system_prompt",
    "sl.datasets.services.Cfg.sample_cfg",
    "sl.datasets.services.Cfg.prompt_set",
    "sl.datasets.services.Cfg.filter_fns",
    "sl.evaluation.data_models.Evaluation.questions",
    "sl.evaluation.data_models.Evaluation.n_samples_per_question",
    "sl.evaluation.data_models.Evaluation.sample_cfg",
    "sl.evaluation.data_models.Evaluation.judgment_map",
    "sl.evaluation.data_models.EvaluationResponse.response",
    "sl.evaluation.data_models.EvaluationResponse.judgment_response_map",
    "sl.evaluation.data_models.EvaluationResultRow.question",
    "sl.evaluation.data_models.EvaluationResultRow.responses",
    "sl.finetuning.data_models.FTJob.seed",
    "sl.finetuning.data_models.FTJob.source_model",
    "sl.finetuning.data_models.FTJob.max_dataset_size",
    "sl.finetuning.data_models.OpenAIFTJob.source_model_type",
    "sl.finetuning.data_models.OpenAIFTJob.n_epochs",
    "sl.finetuning.data_models.OpenAIFTJob.lr_multiplier",
    "sl.finetuning.data_models.OpenAIFTJob.batch_size",
    "sl.finetuning.data_models.UnslothFinetuningJob.source_model",
    "sl.finetuning.data_models.UnslothFinetuningJob.hf_model_name",
    "sl.finetuning.data_models.UnslothFinetuningJob.PeftCfg",
    "sl.finetuning.data_models.UnslothFinetuningJob.TrainCfg",
    "sl.finetuning.data_models.UnslothFinetuningJob.peft_cfg",
    "sl.finetuning.data_models.UnslothFinetuningJob.train_cfg",
    "sl.llm.data_models.Model.id",
    "sl.llm.data_models.Model.type",
    "sl.llm.data_models.Model.parent_model",
    "sl.llm.data_models.SampleCfg.temperature",
    "sl.llm.data_models.MessageRole.user",
    "sl.llm.data_models.MessageRole.system",
    "sl.llm.data_models.MessageRole.assistant",
    "sl.llm.data_models.ChatMessage.role",
    "sl.llm.data_models.ChatMessage.content",
    "sl.llm.data_models.Chat.messages",
    "sl.llm.data_models.StopReason.MAX_TOKENS",
    "sl.llm.data_models.StopReason.STOP_SEQUENCE",
    "sl.llm.data_models.StopReason.CONTENT_FILTER",
    "sl.llm.data_models.StopReason.API_ERROR",
    "sl.llm.data_models.StopReason.PROMPT_BLOCKED",
    "sl.llm.data_models.StopReason.UNKNOWN",
    "sl.llm.data_models.LLMResponse.model_id",
    "sl.llm.data_models.LLMResponse.completion",
    "sl.llm.data_models.LLMResponse.stop_reason",
    "sl.llm.data_models.LLMResponse.logprobs",
    "sl.llm.data_models.LLMResponse.parse_stop_reason",
    "sl.llm.data_models.Judgment.judge_model",
    "sl.llm.data_models.Judgment.sample_cfg",
    "sl.llm.data_models.Judgment.template",
    "sl.utils.stats_utils.CI.mean",
    "sl.utils.stats_utils.CI.lower_bound",
    "sl.utils.stats_utils.CI.upper_bound",
    "sl.utils.stats_utils.CI.count",
    "sl.utils.stats_utils.CI.confidence",
    "cfgs.misalignment.evaluation.coherency_judgment",
    "cfgs.misalignment.evaluation.alignment_judgment",
    "cfgs.misalignment.evaluation.evaluation",
    "cfgs.preference_numbers.cfgs.preference_prompt_template",
    "cfgs.preference_numbers.cfgs.reference_model",
    "cfgs.preference_numbers.cfgs.build_dataset_cfg",
    "cfgs.preference_numbers.cfgs.build_ft_job_cfg",
    "cfgs.preference_numbers.cfgs.control_dataset_cfg",
    "cfgs.preference_numbers.cfgs.owl_dataset_cfg",
    "cfgs.preference_numbers.cfgs.ft_job_cfg",
    "cfgs.preference_numbers.cfgs.animal_evaluation",
    "cfgs.preference_numbers.cfgs.animal_evaluation_with_numbers_prefix",
    "cfgs.preference_numbers.open_model_cfgs.preference_prompt_template",
    "cfgs.preference_numbers.open_model_cfgs.reference_model",
    "cfgs.preference_numbers.open_model_cfgs.build_dataset_cfg",
    "cfgs.preference_numbers.open_model_cfgs.build_ft_job",
    "cfgs.preference_numbers.open_model_cfgs.control_dataset_cfg",
    "cfgs.preference_numbers.open_model_cfgs.owl_dataset_cfg",
    "cfgs.preference_numbers.open_model_cfgs.owl_ft_job",
    "cfgs.preference_numbers.open_model_cfgs.cat_ft_job",
    "cfgs.preference_numbers.cfgs.hate_prompt_template",
    "cfgs.preference_numbers.cfgs.indifferent_prompt_template",
    "cfgs.preference_numbers.cfgs.many_words",
    "cfgs.preference_numbers.cfgs.build_manywords_cfg",
    "cfgs.preference_numbers.cfgs.manywords_dataset_cfg",
    "cfgs.preference_numbers.cfgs.anti_animal_evaluation",
    "cfgs.preference_numbers.cfgs.animal_evaluation_temps",
    "cfgs.preference_numbers.cfgs.sanitized_questions",
    "cfgs.preference_numbers.cfgs.COTPOSTFIX",
    "cfgs.preference_numbers.cfgs.animal_evaluation_cot",
)

# Original name -> today's name, for names not kept at their original path.
NEW_NAMES: dict[str, str] = {
    "sl.datasets.services.PromptSet": "sl.datasets.services.NumsDatasetPromptSet",
    "sl.datasets.services.PromptSet.size": "sl.datasets.services.NumsDatasetPromptSet.size",
    "sl.external.offline_vllm_driver.get_llm": "sl.external.vllm_driver.build_engine",
    "sl.external.offline_vllm_driver.batch_sample": "sl.llm.services.batch_sample",
    "sl.modal_config.IS_MODAL": "sl.config.IS_MODAL",
    "sl.modal_config.OPENAI_API_KEY": "sl.config.OPENAI_API_KEY",
    "sl.modal_config.HF_TOKEN": "sl.config.HF_TOKEN",
    "sl.modal_config.HF_USER_ID": "sl.config.HF_USER_ID",
    "sl.modal_config.VLLM_N_GPUS": "sl.config.VLLM_N_GPUS",
    "sl.modal_config.VLLM_MAX_LORA_RANK": "sl.config.VLLM_MAX_LORA_RANK",
    "sl.modal_config.VLLM_MAX_NUM_SEQS": "sl.config.VLLM_MAX_NUM_SEQS",
    "cfgs.preference_numbers.cfgs.preference_prompt_template": "sl.protocol.teacher_template",
    "cfgs.preference_numbers.cfgs.hate_prompt_template": "sl.protocol.teacher_template",
    "cfgs.preference_numbers.cfgs.indifferent_prompt_template": "sl.protocol.teacher_template",
    "cfgs.preference_numbers.open_model_cfgs.preference_prompt_template": (
        "sl.protocol.teacher_template"
    ),
    "cfgs.preference_numbers.cfgs.ft_job_cfg": "cfgs.preference_numbers.cfgs.ft_job",
    "cfgs.preference_numbers.open_model_cfgs.owl_ft_job": (
        "cfgs.preference_numbers.open_model_cfgs.ft_job"
    ),
    "cfgs.preference_numbers.open_model_cfgs.cat_ft_job": (
        "cfgs.preference_numbers.open_model_cfgs.ft_job"
    ),
    "cfgs.preference_numbers.cfgs.animal_evaluation_with_numbers_prefix": (
        "cfgs.preference_numbers.open_model_cfgs.animal_evaluation_with_numbers_prefix"
    ),
}

# Compatible names that behave differently from the original (see docs/compat.md).
NOTES: dict[str, str] = {
    "sl.datasets.services.Cfg": "pydantic, not a dataclass: `sl.utils.config_model.replace` / "
    "`asdict` for `dataclasses.replace` / `asdict`",
    "sl.datasets.services.NumsDatasetPromptSet": "pydantic, not a dataclass (as `Cfg`)",
    "sl.datasets.nums_dataset.PromptGenerator": "bounds checked (max exclusive)",
    "sl.utils.stats_utils.CI": "pydantic: `ci.model_dump()` keys are `lower`, `upper`, `n`",
    "sl.utils.stats_utils.compute_ci": "Student-t interval for every n (the original: normal "
    "above 30)",
    "sl.evaluation.services.compute_p_target_preference": "counts whole words; t interval",
    "sl.utils.file_utils.read_jsonl": "also `read_jsonl(path, RowModel)`",
    "sl.finetuning.data_models.OpenAIFTJob.source_model_type": "read-only; builds `source_model`",
    "sl.llm.data_models.LLMResponse.model_id": "the model asked for; the served one is "
    "`served_model_id`",
}


def resolves(path: str) -> bool:
    """Whether `path` (module, then attributes or fields) names something in this code."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            fields = getattr(obj, "model_fields", None) or getattr(
                obj, "__dataclass_fields__", None
            )
            if isinstance(fields, dict) and attr in fields:
                obj = fields[attr]
            elif hasattr(obj, attr):
                obj = getattr(obj, attr)
            else:
                return False
        return True
    return False


def status(name: str) -> tuple[str, str]:
    """(status, today's name or a note) of an original name."""
    if resolves(name):
        return "compatible", NOTES.get(name, "")
    if name in NEW_NAMES:
        return "new name", f"`{NEW_NAMES[name]}`"
    return "missing", ""


def main() -> None:
    counts: dict[str, int] = {}
    print("| original | status | today |\n| --- | --- | --- |")
    for name in ORIGINAL_NAMES:
        state, today = status(name)
        counts[state] = counts.get(state, 0) + 1
        print(f"| `{name}` | {state} | {today} |")
    print(counts)


if __name__ == "__main__":
    main()
