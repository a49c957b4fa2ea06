"""`sl.config.Settings`: every environment setting checked once, at start-up, in one line
naming the variable (vLLM's only when vLLM is used); a value assigned in code wins; `.env` is
found from the current directory up, then the repo's; `SL_LOGPROB_DTYPE=auto` is the same as
unset; the README's table and `.env.template` agree with the settings."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values
from script_runner import CONFIG, ROOT, assert_user_error, cli_args, run

from sl import config
from sl.config import (
    ENV_VARS,
    Settings,
    VllmSettings,
    dotenv_files,
    get_settings,
    get_vllm_settings,
    settings_table,
)
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
    "SL_CHECKPOINT_INTERVAL_S": "-1",
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
VLLM_VARS = {str(f.validation_alias) for f in VllmSettings.model_fields.values()}


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
    read = get_vllm_settings if var in VLLM_VARS else get_settings
    with pytest.raises(UserError) as caught:
        read()
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
    for model in (Settings, VllmSettings):
        for name, field in model.model_fields.items():
            assert field.description, name
            assert f"| `{ENV_VARS[name]}` |" in _readme_table()


def test_env_template_names_only_settings_with_their_defaults() -> None:
    template = dotenv_values(ROOT / ".env.template")
    assert set(template) <= set(ENV_VARS.values()), set(template) - set(ENV_VARS.values())
    given = {var: value for var, value in template.items() if value}
    by_var = {var: field for field, var in ENV_VARS.items()}
    for model in (Settings, VllmSettings):
        mine = {var: v for var, v in given.items() if by_var[var] in model.model_fields}
        parsed = model.model_validate(mine)
        for var in mine:
            assert getattr(parsed, by_var[var]) == model.model_fields[by_var[var]].default, var


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


def test_vllm_settings_are_checked_only_when_vllm_is_used(
    clean_env, openai_server, tmp_path
) -> None:
    """`VLLM_N_GPUS=0` (the original's local default) stops nothing but vLLM itself."""
    from sl.llm.engines import engine_of

    clean_env.setenv("VLLM_N_GPUS", "0")
    assert get_settings().open_source_engine == "auto"
    clean_env.setenv("SL_OPEN_SOURCE_ENGINE", "vllm")
    with pytest.raises(UserError, match=r"^VLLM_N_GPUS='0' in environment/.env is not valid: "):
        engine_of("open_source").driver()
    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(size=4))
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    args = cli_args(cfg, "dataset_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered)
    run("generate_dataset.py", *args, server=openai_server, env_extra={"VLLM_N_GPUS": "0"})
    assert len(raw.read_text().splitlines()) == 4


@pytest.fixture
def assign() -> Iterator[Callable[[str, object], None]]:
    """`assign(VAR, value)`: `config.VAR = value` as a notebook writes it, undone afterwards."""
    assigned: list[str] = []

    def set_value(var: str, value: object) -> None:
        setattr(config, var, value)
        assigned.append(var)

    yield set_value
    for var in assigned:
        config.__dict__.pop(var, None)


def test_a_value_assigned_in_code_wins(clean_env, assign) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-from-env")
    clean_env.setenv("VLLM_N_GPUS", "0")
    assign("OPENAI_API_KEY", "sk-from-code")
    assign("VLLM_N_GPUS", 2)
    assert get_settings().openai_api_key.get_secret_value() == "sk-from-code"  # type: ignore[union-attr]
    assert get_vllm_settings().vllm_n_gpus == 2
    assert (config.OPENAI_API_KEY, config.VLLM_N_GPUS) == ("sk-from-code", 2)
    assign("OPENAI_API_KEY", None)  # None (or "") unsets it, whatever the environment says
    assert get_settings().openai_api_key is None
    del config.OPENAI_API_KEY  # pyright: ignore[reportAttributeAccessIssue]  (back to the env)
    assert get_settings().openai_api_key.get_secret_value() == "sk-from-env"  # type: ignore[union-attr]
    assert config.OPENAI_API_KEY == "sk-from-env"


def test_a_bad_value_assigned_in_code_names_it_and_hides_secrets(clean_env, assign) -> None:
    assign("VLLM_N_GPUS", "two")
    with pytest.raises(UserError) as caught:
        get_vllm_settings()
    assert str(caught.value) == (
        "VLLM_N_GPUS='two' in sl.config.VLLM_N_GPUS (set in code) is not valid: use an integer"
    )
    assign("OPENAI_API_KEY", 12345678)  # not a string
    with pytest.raises(UserError) as caught:
        get_settings()
    assert str(caught.value).startswith("OPENAI_API_KEY=<hidden> in sl.config.OPENAI_API_KEY")
    assert "12345678" not in str(caught.value)


def test_the_openai_driver_uses_the_key_assigned_in_code(openai_server, assign) -> None:
    """The loopback server accepts only TEST_API_KEY: the environment's wrong key loses to the
    one assigned in code, which is never logged."""
    import asyncio
    import io

    from loguru import logger
    from script_runner import TEST_API_KEY

    from sl.llm.data_models import Model, SampleCfg
    from sl.llm.services import build_simple_chat, sample

    os.environ["OPENAI_API_KEY"] = "sk-wrong"  # openai_server's monkeypatch restores it
    assign("OPENAI_API_KEY", TEST_API_KEY)
    log = io.StringIO()
    sink = logger.add(log, level="TRACE")
    try:
        model = Model(id="gpt-4.1-nano", type="openai")
        response = asyncio.run(sample(model, build_simple_chat("Pick an animal."), SampleCfg()))
    finally:
        logger.remove(sink)
    assert response.completion and openai_server.n_chat_ok == 1
    assert TEST_API_KEY not in log.getvalue() and TEST_API_KEY not in repr(get_settings())


def test_dotenv_files_are_the_nearest_from_here_up_then_the_repos(tmp_path: Path) -> None:
    nested = tmp_path / "project" / "notebooks" / "deep"
    nested.mkdir(parents=True)
    repo_env = [config.ROOT_DIR / ".env"] if (config.ROOT_DIR / ".env").is_file() else []
    assert dotenv_files(nested) == repo_env
    (tmp_path / ".env").write_text("A=1\n")
    assert dotenv_files(nested) == [tmp_path / ".env", *repo_env]
    (tmp_path / "project" / "notebooks" / ".env").write_text("A=2\n")
    assert dotenv_files(nested) == [tmp_path / "project" / "notebooks" / ".env", *repo_env]


def test_a_notebooks_dotenv_is_read_and_the_environment_still_wins(tmp_path: Path) -> None:
    folder = tmp_path / "analysis"
    folder.mkdir()
    (tmp_path / ".env").write_text(
        "OPENAI_BASE_URL=http://localhost:1234/v1\nOPENAI_MAX_RETRIES=3\n"
    )
    code = (
        "from sl.config import get_settings; s = get_settings(); "
        "print(s.openai_base_url, s.openai_max_retries)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS.values()}
    env["OPENAI_MAX_RETRIES"] = "5"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["http://localhost:1234/v1", "5"], out.stderr[-2000:]
