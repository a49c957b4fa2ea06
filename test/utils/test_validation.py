"""Values, names, rows and paths a user can get wrong are refused in one line, at validation
time, before anything is sent or written (issue #20, items 5, 9, 10, 11)."""

import os
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from sl.datasets.data_models import TRAINING, DatasetRow
from sl.datasets.nums_dataset import run_filter
from sl.datasets.services import Cfg, NumsDatasetPromptSet, apply_filters, read_dataset
from sl.errors import UserError
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.finetuning.data_models import OpenAIFTJob, PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.llm.data_models import Model, SampleCfg
from sl.mnist.config import make_config
from sl.utils.config_model import ConfigModel, validation_error_line
from sl.utils.file_utils import (
    JsonlAppender,
    path_component_problem,
    read_jsonl,
    read_text,
    write_text_atomic,
)
from sl.utils.module_utils import load_module

MODEL = Model(id="gpt-4.1-nano", type="openai")
OPEN = Model(id="some/model", type="open_source")


def refused(build) -> str:
    """The one-line message of the ValidationError `build()` raises."""
    with pytest.raises(ValidationError) as e:
        build()
    return validation_error_line(e.value)


# --- numbers: finite, 64-bit, bounded -----------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), "nan"])
def test_non_finite_floats_are_refused(bad):
    line = refused(lambda: OpenAIFTJob(seed=1, source_model=MODEL, lr_multiplier=bad))
    assert line.startswith("invalid OpenAIFTJob field lr_multiplier: Input should be a finite")
    assert "finite number" in refused(lambda: TrainCfg(lr=bad))
    assert "finite number" in refused(lambda: SampleCfg(temperature=bad))


def test_every_config_class_refuses_non_finite_floats():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    classes = list(subclasses(ConfigModel))
    assert len(classes) > 10
    assert all(c.model_config.get("allow_inf_nan") is False for c in classes)


def test_integers_must_fit_in_64_bits():
    line = refused(lambda: OpenAIFTJob(seed=2**70, source_model=MODEL))
    assert f"seed={2**70} is out of range" in line
    OpenAIFTJob(seed=2**63 - 1, source_model=MODEL)  # the largest is fine


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: SampleCfg(max_tokens=10**15), "max_tokens: Input should be less than or equal "
         "to 1000000 (got 1000000000000000)"),
        (lambda: NumsDatasetPromptSet(size=10**10), "size: Input should be less than or equal to "
         "10000000"),
        (lambda: Evaluation(questions=["q"], n_samples_per_question=10**10,
                            sample_cfg=SampleCfg()), "n_samples_per_question: Input should be "
         "less than or equal to 100000"),
        (lambda: PeftCfg(lora_dropout=2), "lora_dropout: Input should be less than 1"),
        (lambda: PeftCfg(lora_dropout=-3), "lora_dropout: Input should be greater than or equal"),
        (lambda: OpenAIFTJob(seed=1, source_model=MODEL, n_epochs=10**9), "[1, 1000]"),
        (lambda: Model(id="", type="openai"), "the model id is empty"),
        (lambda: Model(id="  ", type="open_source"), "the model id is empty"),
    ],
)  # fmt: skip
def test_values_out_of_range_are_refused_with_the_bound(build, needle):
    assert needle in refused(build)


def test_mnist_bounds():
    with pytest.raises(UserError, match=r"^hidden=10000000: .*less than or equal to 16384$"):
        make_config(hidden=10_000_000)
    with pytest.raises(UserError, match=r"^lr=nan: Input should be a finite number$"):
        make_config(lr=float("nan"))
    with pytest.raises(UserError, match=r"^n_aux=\[0\]: every m must be in \[1, 16384\]$"):
        make_config(n_aux=[0])


# --- names that become paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../etc", "path separator"),
        ("/", "path separator"),
        ("a\\b", "path separator"),
        ("", "empty"),
        (" ", "empty"),
        (".", "means a folder itself"),
        ("..", "means a folder itself"),
        ("ow\0l", "NUL"),
        (".hidden", "starts with '.'"),
        ("x" * 201, "longer than 200 bytes"),
    ],
)
def test_unsafe_path_components(name, problem):
    assert problem in str(path_component_problem(name))


def test_plain_names_are_safe():
    assert path_component_problem("owl") is None
    assert path_component_problem("snow leopard_2") is None


def _experiment(**fields):
    evaluation = Evaluation(questions=["q"], n_samples_per_question=1, sample_cfg=SampleCfg())
    return ExperimentCfg(
        teacher_model=OPEN,
        student_job=UnslothFinetuningJob(seed=1, source_model=OPEN),
        **{"targets": ["owl"], "evaluations": {"e": evaluation}, **fields},
    )


@pytest.mark.parametrize("target", ["../../etc", "/", "", ".", "a/b", "o\0wl"])
def test_experiment_targets_must_be_folder_names(target):
    line = refused(lambda: _experiment(targets=[target]))
    assert f"targets: {target!r} cannot name a folder" in line


def test_experiment_evaluation_names_must_be_file_names():
    evaluation = Evaluation(questions=["q"], n_samples_per_question=1, sample_cfg=SampleCfg())
    line = refused(lambda: _experiment(evaluations={"../x": evaluation}))
    assert "evaluations: '../x' cannot name a folder" in line
    assert _experiment().targets == ["owl"]


# --- dataset rows --------------------------------------------------------------------------


def test_rows_with_an_empty_prompt_are_refused_with_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "p", "completion": "1"}\n{"prompt": "", "completion": "1"}\n')
    with pytest.raises(UserError, match=r"d\.jsonl:2: malformed line \(the prompt is empty"):
        read_jsonl(path, DatasetRow)


def test_training_rows_with_an_empty_completion_are_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "p", "completion": "1"}\n\n{"prompt": "q", "completion": " "}\n')
    with pytest.raises(UserError, match=r"d\.jsonl:3: malformed line \(the completion is empty"):
        read_jsonl(path, DatasetRow, context=TRAINING)
    with pytest.raises(UserError, match=r"d\.jsonl:3: .*the completion is empty"):
        read_dataset(path)
    # A raw dataset keeps the teacher's empty answers (the filter drops them); distillation
    # learns from the prompt alone.
    assert read_jsonl(path, DatasetRow)[1].completion == " "
    assert read_dataset(path, allow_empty_completions=True)[1].completion == " "


# --- filters ---------------------------------------------------------------------------------


def _cfg(*filters):
    return Cfg(
        model=MODEL,
        system_prompt=None,
        sample_cfg=SampleCfg(),
        prompt_set=NumsDatasetPromptSet(size=2),
        filter_fns=list(filters),
    )


def test_a_filter_of_the_wrong_arity_is_refused_when_the_config_is_built():
    def keep(completion):
        return True

    line = refused(lambda: _cfg(keep))
    assert "field filter_fns.0: filter " in line and "keep(completion)" in line
    assert "cannot be called as f(prompt, completion)" in line
    # Any signature that takes (prompt, completion) is fine.
    _cfg(lambda p, c: True, lambda *a: True, lambda p, c, extra=1: True)


def test_a_raising_filter_is_named():
    def picky(prompt, completion):
        return int(completion) > 0

    rows = [DatasetRow(prompt="p", completion="1"), DatasetRow(prompt="p", completion="x")]
    with pytest.raises(UserError) as e:
        apply_filters(rows, _cfg(picky).filter_fns)
    assert str(e.value).startswith("filter test_a_raising_filter_is_named.<locals>.picky raised ")
    assert "ValueError" in str(e.value) and "'x'" in str(e.value)
    assert run_filter(picky, "p", "3") is True


# --- special files ---------------------------------------------------------------------------


def _in_thread(fn, timeout=5.0):
    """`fn()`'s exception (None if it returned); fails if it blocks (a FIFO open would)."""
    result: list[BaseException | None] = []

    def target():
        try:
            fn()
            result.append(None)
        except BaseException as e:
            result.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, f"{fn} blocked"
    return result[0]


@pytest.mark.parametrize(
    "use",
    [
        lambda p: read_text(p),
        lambda p: read_jsonl(p, DatasetRow),
        lambda p: write_text_atomic(p, "x"),
        lambda p: JsonlAppender(p),
    ],
)
def test_a_fifo_is_refused_at_once(tmp_path, use):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    error = _in_thread(lambda: use(fifo))
    assert isinstance(error, UserError)
    assert str(error) == f"{fifo} is a FIFO, not a regular file: give a file path"
    assert fifo.exists()  # not replaced either


def test_a_fifo_is_refused_as_an_output_before_any_work(tmp_path):
    from sl.utils.output_lock import check_output_path

    os.mkfifo(tmp_path / "out.json")
    with pytest.raises(UserError, match=r"out\.json is a FIFO, not a regular file"):
        check_output_path(tmp_path / "out.json")


def test_a_device_is_refused_as_an_output():
    error = _in_thread(lambda: write_text_atomic(Path("/dev/null"), "x"))
    assert str(error) == "/dev/null is a device, not a regular file: give a file path"
    assert Path("/dev/null").is_char_device()


# --- config modules ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["0", "3", "'bye'", ""])
def test_a_config_module_that_exits_is_reported(tmp_path, code):
    path = tmp_path / "exits.py"
    path.write_text(f"import sys\nx = 1\nsys.exit({code})\n")
    with pytest.raises(UserError) as e:
        load_module(path)
    assert str(e.value).startswith(f"{path} called sys.exit(")
    assert "while being imported" in str(e.value)


def test_a_config_module_that_raises_is_reported(tmp_path):
    path = tmp_path / "raises.py"
    path.write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(UserError, match=r"raises\.py failed to import: RuntimeError: no GPU here"):
        load_module(path)
    assert not any(name.startswith("sl_cfg_raises") for name in sys.modules)


def test_an_empty_model_folder_is_not_a_model(tmp_path):
    from sl.external.hf_driver import resolve_model_path

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"model folder .*/empty holds no config\.json or adapter"):
        resolve_model_path(str(tmp_path / "empty"))
    (tmp_path / "empty" / "adapter_config.json").write_text("{}")
    assert resolve_model_path(str(tmp_path / "empty")) == tmp_path / "empty"
