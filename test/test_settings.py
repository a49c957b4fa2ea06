"""`sl.config.Settings`: every environment setting checked once, at start-up, in one line
naming the variable; `SL_LOGPROB_DTYPE=auto` is the same as unset; the README's table and
`.env.template` agree with `Settings`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values
from script_runner import CONFIG, ROOT, assert_user_error, cli_args, run

from sl.config import ENV_VARS, Settings, get_settings, settings_table
from sl.errors import UserError

# Variable -> a value it refuses; every setting with a checkable value is here (see below).
BAD_VALUES = {
    "OPENAI_BASE_URL": "localhost:8000",
    "OPENAI_MAX_CONCURRENCY": "0",
    "OPENAI_START_RPS": "nan",
    "OPENAI_MAX_RETRIES": "-1",
    "OPENAI_TIMEOUT_S": "inf",
    "OPENAI_POLL_INTERVAL_S": "inf",
    "OPENAI_BACKOFF_BASE_S": "1e9",
    "SL_OPEN_SOURCE_ENGINE": "llamacpp",
    "SL_DEVICE": "gpu",
    "SL_TRANSFORMERS_BATCH_SIZE": "-3",
    "SL_TRANSFORMERS_DTYPE": "float64",
    "SL_LOGPROB_DTYPE": "garbage",
    "SL_VLLM_CHUNK_SIZE": "0",
    "VLLM_N_GPUS": "1.5",
    "VLLM_MAX_LORA_RANK": "0",
    "VLLM_MAX_NUM_SEQS": "many",
    "VLLM_MAX_MODEL_LEN": "0",
    "VLLM_GPU_MEMORY_UTILIZATION": "1.5",
    "SL_LOG_LEVEL": "loud",
    "SL_NO_DOTENV": "maybe",
    "SL_MODAL_APP": "my app",
    "SL_MODAL_VOLUME": "x" * 64,
    "SL_MODAL_SECRET": "a/b",
    "SL_MODAL_GPU": " ",
    "SL_MODAL_MNIST_GPU": "T4 x2",
    "SL_MODAL_GPU_TIMEOUT_S": "100000",
    "SL_MODAL_CPU_TIMEOUT_S": "0",
    "SL_MODAL_RETRIES": "two",
    "SL_MODAL_COMMIT_INTERVAL_S": "-5",
}
FREE_FORM = {"OPENAI_API_KEY", "HF_TOKEN", "HF_USER_ID", "SL_CACHE_DIR"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No sl setting in the environment (the defaults apply)."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_every_checkable_setting_has_a_bad_value_case() -> None:
    assert set(BAD_VALUES) | FREE_FORM == set(ENV_VARS.values())


@pytest.mark.parametrize("var", sorted(BAD_VALUES))
def test_a_bad_value_is_one_line_naming_the_variable(clean_env, var: str) -> None:
    value = BAD_VALUES[var]
    clean_env.setenv(var, value)
    with pytest.raises(UserError) as caught:
        get_settings()
    message = str(caught.value)
    assert message.startswith(f"{var}={value!r} in environment/.env is not valid: "), message
    assert "\n" not in message and len(message) < 200, message


def test_messages_say_what_to_use(clean_env) -> None:
    expected = {
        "SL_LOGPROB_DTYPE": "use one of auto, float32, bfloat16 or float16",
        "SL_DEVICE": "use auto, cpu, cuda or cuda:N",
        "SL_MODAL_RETRIES": "use an integer",
        "OPENAI_POLL_INTERVAL_S": "finite",
        "OPENAI_START_RPS": "finite",
        "OPENAI_BACKOFF_BASE_S": "less than or equal to 600",
        "OPENAI_BASE_URL": "http(s) URL",
    }
    for var, hint in expected.items():
        clean_env.setenv(var, BAD_VALUES[var])
        with pytest.raises(UserError, match=hint.replace("(", r"\(").replace(")", r"\)")):
            get_settings()
        clean_env.delenv(var)


def test_a_bad_secret_is_not_shown(clean_env) -> None:
    clean_env.setenv("OPENAI_BASE_URL", "http://localhost:1/v1")
    clean_env.setenv("OPENAI_API_KEY", "sk-SECRET")
    clean_env.setenv("OPENAI_POLL_INTERVAL_S", "1e9")
    with pytest.raises(UserError) as caught:
        get_settings()
    assert "SECRET" not in str(caught.value)


def test_good_values_are_read_on_each_call(clean_env) -> None:
    assert get_settings() == Settings()
    clean_env.setenv("SL_LOG_LEVEL", "debug")
    clean_env.setenv("SL_DEVICE", "cuda:1")
    clean_env.setenv("OPENAI_POLL_INTERVAL_S", "3600")
    clean_env.setenv("SL_TRANSFORMERS_BATCH_SIZE", "0")
    settings = get_settings()
    assert (settings.log_level, settings.device) == ("DEBUG", "cuda:1")
    assert (settings.openai_poll_interval_s, settings.transformers_batch_size) == (3600.0, 0)
    clean_env.setenv("SL_LOG_LEVEL", "warning")
    assert get_settings().log_level == "WARNING"


def test_logprob_dtype_auto_is_the_same_as_unset(clean_env, tiny_model_dir: Path) -> None:
    """The documented default, set explicitly, scores exactly as unset: float32 on the CPU,
    also on CPUs with native bf16 (where `auto` used to give bfloat16)."""
    import numpy as np
    import torch

    from sl.evaluation.logprob import scoring_dtype, target_probabilities
    from sl.external.torch_models import resolve_dtype
    from sl.llm.data_models import Model

    clean_env.setenv("SL_DEVICE", "cpu")
    model = Model(id=str(tiny_model_dir), type="open_source")
    questions = ["Name your favorite animal.", "Pick an animal."]

    def scores(dtype: str | None) -> tuple[str, np.ndarray]:
        if dtype is None:
            clean_env.delenv("SL_LOGPROB_DTYPE", raising=False)
        else:
            clean_env.setenv("SL_LOGPROB_DTYPE", dtype)
        return scoring_dtype(), target_probabilities(model, questions, "owl")

    unset_name, unset = scores(None)
    auto_name, auto = scores("auto")
    assert unset_name == auto_name == "float32"
    assert resolve_dtype(auto_name, "cpu") == torch.float32
    np.testing.assert_array_equal(auto, unset)
    # The comparison can tell dtypes apart: bfloat16 weights move the scores.
    _, bf16 = scores("bfloat16")
    assert not np.array_equal(bf16, unset)


def _readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    return text[text.index(start) + len(start) : text.index(end)]


def test_readme_table_is_generated_from_settings() -> None:
    assert _readme_table() == settings_table(), (
        "README's settings table is stale: paste the output of "
        "`python -c 'from sl.config import settings_table; print(settings_table())'`"
    )
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"| `{ENV_VARS[name]}` |" in _readme_table()


def test_env_template_names_only_settings_with_their_defaults() -> None:
    template = dotenv_values(ROOT / ".env.template")
    assert set(template) <= set(ENV_VARS.values()), set(template) - set(ENV_VARS.values())
    given = {var: value for var, value in template.items() if value}
    by_var = {var: field for field, var in ENV_VARS.items()}
    parsed = Settings.model_validate(given)
    for var in given:
        assert getattr(parsed, by_var[var]) == Settings.model_fields[by_var[var]].default, var


SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.py") if p.name != "cli.py")


def test_every_script_checks_settings_at_start_up() -> None:
    """Each script, started with a bad setting, exits 2 with the one line (before parsing
    its flags: no flags are given)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS.values()}
    env.update(SL_NO_DOTENV="1", SL_LOGPROB_DTYPE="garbage")
    procs = {
        script: subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / script)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in SCRIPTS
    }
    for script, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        finished = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
        assert_user_error(finished, "SL_LOGPROB_DTYPE='garbage' in environment/.env is not valid")
        assert "Traceback" not in stderr, script


def test_a_script_with_a_bad_setting_sends_and_writes_nothing(openai_server, tmp_path) -> None:
    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(size=10))
    raw, filtered = tmp_path / "out" / "raw.jsonl", tmp_path / "out" / "filtered.jsonl"
    args = cli_args(cfg, "dataset_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    proc = run(
        "generate_dataset.py",
        *args,
        server=openai_server,
        env_extra={"OPENAI_POLL_INTERVAL_S": "inf"},
        check=False,
    )
    assert_user_error(proc, "OPENAI_POLL_INTERVAL_S='inf' in environment/.env is not valid")
    assert openai_server.requests_total == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.py"]
