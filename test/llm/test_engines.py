"""The engine registry (`sl.llm.engines`): what each engine can do, one line for an unknown
type, and code that follows a registered engine's capabilities instead of its type string."""

import asyncio

import pytest
from fake_driver import FakeDriver
from pydantic import ValidationError

import modal_client
from sl.datasets.data_models import DatasetRow
from sl.datasets.services import NumsDatasetPromptSet
from sl.errors import UserError
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.finetuning.data_models import OpenAIFTJob
from sl.finetuning.services import run_finetuning_job
from sl.llm import engines, services
from sl.llm.data_models import Model, SampleCfg
from sl.llm.engines import Engine, Key, engine_of

NANO = Model(id="gpt-4.1-nano", type="openai")
QWEN = Model(id="Qwen/Qwen2.5-7B-Instruct", type="open_source")
ECHO = Model.model_construct(id="tiny", type="echo")  # served by the `echo` fixture's engine
HI = [services.build_simple_chat("hi")]


def capabilities(engine: Engine) -> dict:
    return {
        "runs_locally": engine.runs_locally,
        "needs_key": engine.needs_key and engine.needs_key.variable,
        "has_batch_api": engine.has_batch_api,
        "can_score_logprobs": engine.can_score_logprobs,
        "fine_tunes": engine.fine_tunes,
    }


def test_capabilities_of_each_engine():
    assert sorted(engines.ENGINES) == ["open_source", "openai"]
    assert capabilities(engine_of(NANO)) == {
        "runs_locally": False,
        "needs_key": "OPENAI_API_KEY",
        "has_batch_api": True,
        "can_score_logprobs": False,
        "fine_tunes": "api",
    }
    assert capabilities(engine_of(QWEN)) == {
        "runs_locally": True,
        "needs_key": None,
        "has_batch_api": False,
        "can_score_logprobs": True,
        "fine_tunes": "lora",
    }


def test_unknown_type_is_one_line_listing_the_valid_ones():
    stray = Model.model_construct(id="m", type="llama_cpp")
    for call in (lambda: services.get_driver(stray), lambda: services.check_ready([stray])):
        with pytest.raises(UserError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and "'llama_cpp'" in message
        assert "['open_source', 'openai']" in message


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    """A registered local engine "echo" that answers with the question and needs ECHO_KEY."""
    driver = FakeDriver(lambda chat: f"echo: {chat.messages[-1].content}")

    def require(settings) -> str:
        raise UserError("ECHO_KEY is not set")

    engine = Engine(name="echo", label="echo", driver=lambda: driver, runs_locally=True,
                    needs_key=Key("ECHO_KEY", require))  # fmt: skip
    monkeypatch.setitem(engines.ENGINES, "echo", engine)
    return driver


def test_a_registered_engine_is_used_by_its_capabilities(echo, tmp_path):
    [answer] = asyncio.run(services.batch_sample(ECHO, HI, SampleCfg()))
    assert answer.completion == "echo: hi" and echo.prompts == ["hi"]
    with pytest.raises(UserError, match="ECHO_KEY is not set"):
        services.check_ready([ECHO])
    # Runs locally: the GPU image on Modal; an OpenAI model alone does not need it.
    assert modal_client.needs_gpu([NANO, ECHO]) and not modal_client.needs_gpu([NANO])
    with pytest.raises(UserError, match=r"Batch API is for OpenAI models \(type 'openai'\)"):
        asyncio.run(services.batch_sample_n(ECHO, HI, SampleCfg(), batch_state_path=tmp_path))
    assert echo.prompts == ["hi"]


def test_a_batch_api_is_found_through_the_registry(monkeypatch, tmp_path):
    calls = []

    async def batch_sample(model, chats, cfgs, state_path, on_result):
        calls.append((model.id, len(chats), state_path))
        return [[]] * len(chats)

    engine = Engine(name="echo", label="echo", driver=FakeDriver, batch_api=lambda: batch_sample)
    monkeypatch.setitem(engines.ENGINES, "echo", engine)
    state = tmp_path / "batch.json"
    assert asyncio.run(services.batch_sample_n(ECHO, HI * 3, SampleCfg(), None, state)) == [[]] * 3
    assert calls == [("tiny", 3, state)]


def test_register_driver_keeps_the_capabilities_and_the_dict_api_still_works(monkeypatch):
    fake = FakeDriver()
    previous = services.register_driver("openai", lambda: fake)
    try:
        assert engine_of(NANO).driver() is fake and services.get_driver(NANO) is fake
        assert services.DRIVER_FACTORIES["openai"]() is fake
        assert capabilities(engine_of(NANO))["has_batch_api"]  # only the driver changed
    finally:
        assert previous is not None
        services.register_driver("openai", previous)
    assert services.get_driver(NANO) is not fake
    # A new type through the dict: an engine that can do nothing but sample, removed on undo.
    with monkeypatch.context() as patch:
        patch.setitem(services.DRIVER_FACTORIES, "echo", lambda: fake)
        assert services.get_driver(ECHO) is fake
        assert not any(capabilities(engine_of(ECHO)).values())
    assert "echo" not in engines.ENGINES and "echo" not in services.DRIVER_FACTORIES


def test_an_openai_fine_tune_of_an_open_model_is_one_line_before_anything(tmp_path):
    job = OpenAIFTJob(seed=1, source_model=QWEN)
    rows = [DatasetRow(prompt="1, 2", completion="3, 4")]
    with pytest.raises(UserError) as err:
        asyncio.run(run_finetuning_job(job, rows, tmp_path / "model.json"))
    assert str(err.value) == (
        "OpenAIFTJob fine-tunes OpenAI models (type 'openai'), not 'open_source' ones: use "
        "UnslothFinetuningJob for open models"
    )
    assert list(tmp_path.iterdir()) == []


def test_experiment_options_ask_the_teacher_engine():
    fields = dict(
        teacher_model=NANO, targets=["owl"], prompt_set=NumsDatasetPromptSet(size=4, seed=1),
        student_job=OpenAIFTJob(seed=1, source_model=NANO),
        evaluations={"fav": Evaluation(questions=["Animal?"], n_samples_per_question=1,
                                       sample_cfg=SampleCfg())},
    )  # fmt: skip
    ExperimentCfg(**fields)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"eval_modes 'logprob' needs a teacher_model of "
                       r"open models \(type 'open_source'\)"):  # fmt: skip
        ExperimentCfg(**fields, eval_modes=["logprob"])  # type: ignore[arg-type]
