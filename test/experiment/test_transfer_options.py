"""Transfer options on the tiny model: distillation, exact P(target), fine-tuned teachers,
and the experiment end to end with all of them."""

import asyncio
import json
from pathlib import Path

import pytest
import torch
from finetuning_helpers import distill_job as job
from finetuning_helpers import number_rows
from tiny_experiment import distill_experiment
from tiny_model import build_tiny_lora

from sl.errors import UserError
from sl.llm.data_models import Model


def lora_teacher(base_dir: Path, tmp_path: Path) -> Model:
    """A teacher: the tiny model with a random LoRA (tmp_path/teacher)."""
    base = Model(id=str(base_dir), type="open_source")
    adapter = build_tiny_lora(base_dir, tmp_path / "teacher")
    return Model(id=str(adapter), type="open_source", parent_model=base)


def test_logprob_matches_manual_softmax(tiny_model_dir: Path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sl.evaluation.logprob import target_probabilities, variant_token_ids

    monkeypatch.setenv("SL_LOGPROB_DTYPE", "float32")  # a GPU scores in bf16: compare exactly
    question = "Name your favorite animal in one word."
    [got] = target_probabilities(
        Model(id=str(tiny_model_dir), type="open_source"), [question], "owl"
    )
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    expected = 0.0
    variants = variant_token_ids(tok, "owl")
    assert variants and all(len(v) >= 1 for v in variants)
    for v in variants:  # one token at a time, by hand
        p = 1.0
        for k, token in enumerate(v):
            with torch.no_grad():
                logits = lm(torch.tensor([prompt + v[:k]])).logits[0, -1]
            p *= float(torch.softmax(logits.double(), -1)[token])
        expected += p
    assert got == pytest.approx(expected, rel=1e-4)
    assert 0 < got < 1


@pytest.mark.parametrize("top_k", [None, 8])  # the full distribution; the teacher's top 8
def test_distillation_reduces_kl_on_held_out_sequences(
    tiny_model_dir: Path, tmp_path: Path, top_k: int | None
):
    from sl.external.torch_models import load_causal_lm
    from sl.finetuning.distill import distill_student
    from sl.finetuning.distill_cfg import DistillCfg
    from sl.finetuning.kl import mean_kl
    from sl.finetuning.soft_labels import teacher_log_probs

    teacher = lora_teacher(tiny_model_dir, tmp_path)
    cfg = DistillCfg(top_k=top_k)
    held_out = number_rows(8, seed=2)
    t = load_causal_lm(teacher)
    tok = t.tokenizer
    examples = teacher_log_probs(t.module, tok, held_out, None, cfg)
    assert teacher.parent_model is not None
    before = mean_kl(load_causal_lm(teacher.parent_model).module, tok, examples)
    out = tmp_path / "student" / "model.json"
    student = distill_student(job(tiny_model_dir), teacher, number_rows(32, seed=1), out, cfg)
    after = mean_kl(load_causal_lm(student).module, tok, examples)
    assert after < 0.8 * before, (before, after)
    again = distill_student(job(tiny_model_dir), teacher, number_rows(32, seed=1), out, cfg)
    assert again == student  # resumed, not retrained


def test_prompt_tokens_add_the_teachers_targets_on_the_shared_prompt(
    tiny_model_dir: Path, tmp_path
):
    """With `prompt_tokens`, the targets also cover the prompt tokens the teacher's and the
    student's chat prompts share (not the teacher's system prompt), each the teacher's exact
    next-token distribution there; the completion's targets are unchanged."""
    import torch

    from sl.external.torch_models import chat_prompt_ids, load_causal_lm
    from sl.finetuning.distill_cfg import DistillCfg
    from sl.finetuning.soft_labels import teacher_log_probs

    t = load_causal_lm(lora_teacher(tiny_model_dir, tmp_path), dtype="float32")
    tok, rows, system = t.tokenizer, number_rows(3, seed=4), "You love owls."
    plain = teacher_log_probs(
        t.module, tok, rows, system, DistillCfg(bf16=False, vocabulary="full")
    )
    with_prompt = teacher_log_probs(
        t.module, tok, rows, system, DistillCfg(bf16=False, vocabulary="full", prompt_tokens=True)
    )
    for row, a, b in zip(rows, plain, with_prompt, strict=True):
        teacher_prompt = chat_prompt_ids(tok, row.prompt, system)
        k = b.n_prompt
        assert a.n_prompt == 0 and 0 < k < len(b.student_prompt) < len(teacher_prompt)
        assert b.student_prompt[-k:] == teacher_prompt[-k:]  # the shared part only
        first = -k - 1  # the student's first token starts its prompt; else the parts differ
        assert k == len(b.student_prompt) - 1 or b.student_prompt[first] != teacher_prompt[first]
        ids = torch.tensor([teacher_prompt + b.completion], device=t.module.device)
        with torch.no_grad():
            probs = t.module(input_ids=ids).logits[0].float().softmax(-1)
        start = len(teacher_prompt) - 1 - k
        expected = probs[start : start + k + len(b.completion)]
        torch.testing.assert_close(b.target.float(), expected.cpu(), atol=2e-3, rtol=0)
        torch.testing.assert_close(b.target[k:], a.target)


def test_replicate_students_reuse_the_teacher_targets(tiny_model_dir: Path, tmp_path: Path):
    """A second student of the same teacher and rows (another seed) reuses the targets already
    computed, and trains exactly as it would from freshly computed ones."""
    from safetensors.torch import load_file

    from sl.finetuning import distill
    from sl.finetuning.open_source import adapter_dir_for

    teacher = lora_teacher(tiny_model_dir, tmp_path)
    cfg, rows = distill.DistillCfg(bf16=False), number_rows(16, seed=1)
    seed2 = job(tiny_model_dir, epochs=1).model_copy(update={"seed": 2})

    def weights(out: Path) -> dict:
        return load_file(str(adapter_dir_for(out) / "adapter_model.safetensors"))

    distill._last_targets.clear()
    distill.distill_student(
        job(tiny_model_dir, epochs=1), teacher, rows, tmp_path / "a" / "m.json", cfg
    )
    cached = next(iter(distill._last_targets.values()))
    distill.distill_student(seed2, teacher, rows, tmp_path / "b" / "m.json", cfg)
    assert next(iter(distill._last_targets.values())) is cached  # reused, not recomputed
    distill._last_targets.clear()
    distill.distill_student(seed2, teacher, rows, tmp_path / "c" / "m.json", cfg)
    reused, fresh = weights(tmp_path / "b" / "m.json"), weights(tmp_path / "c" / "m.json")
    assert reused.keys() == fresh.keys()
    assert all(reused[k].equal(fresh[k]) for k in reused)


def test_fine_tuned_teacher_changes_greedy_numbers(tiny_model_dir: Path, tmp_path: Path):
    from sl.datasets.services import NumsDatasetPromptSet
    from sl.evaluation.data_models import Evaluation
    from sl.experiment.data_models import ExperimentCfg, TeacherRun
    from sl.experiment.paths import ExperimentPaths
    from sl.experiment.trait_teacher import TraitTeacherCfg
    from sl.experiment.transfer import teacher_model
    from sl.external.transformers_driver import TransformersDriver
    from sl.llm.data_models import Chat, ChatMessage, MessageRole, SampleCfg

    base = Model(id=str(tiny_model_dir), type="open_source")
    cfg = ExperimentCfg(
        teacher_model=base, targets=["owl"], teacher_mode="finetune",
        trait_teacher=TraitTeacherCfg(n_rows=32, job=job(tiny_model_dir, epochs=3)),
        prompt_set=NumsDatasetPromptSet(size=4, seed=1), student_job=job(tiny_model_dir),
        evaluations={"fav": Evaluation(questions=["Name your favorite animal."],
                                       n_samples_per_question=1, sample_cfg=SampleCfg())},
    )  # fmt: skip
    teacher = asyncio.run(teacher_model(cfg, ExperimentPaths(tmp_path), TeacherRun("owl")))
    assert teacher.parent_model == base
    questions = (tmp_path / "teachers" / "owl" / "trait.jsonl").read_text()
    assert "Name your favorite animal." not in questions and "owl" in questions.lower()
    chats = [
        Chat(messages=[ChatMessage(role=MessageRole.user, content=r.prompt)])
        for r in number_rows(4, seed=3)
    ]
    greedy = [SampleCfg(temperature=0.0, max_tokens=12)] * len(chats)
    driver = TransformersDriver(dtype="float32")
    out_base = asyncio.run(driver.batch_sample(base, chats, greedy))
    out_teacher = asyncio.run(driver.batch_sample(teacher, chats, greedy))
    assert [r[0].completion for r in out_base] != [r[0].completion for r in out_teacher]


def test_experiment_with_transfer_options_end_to_end(
    numbers_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from sl.experiment.report import format_report
    from sl.experiment.runner import run_experiment

    monkeypatch.setenv("SL_OPEN_SOURCE_ENGINE", "transformers")
    questions = ["Name your favorite animal.", "Pick an animal."]
    cfg = distill_experiment(numbers_model_dir, n_trait_rows=16, questions=questions, n_samples=2)
    out = tmp_path / "out"
    report = asyncio.run(run_experiment(cfg, out))
    assert report is not None
    assert [p.metric for p in report.panels] == ["sampled", "logprob"]
    logprob = {(r.target, r.condition): r for r in report.panels[1].analysis.rows}

    # Each row is its model's saved P(owl) per question; with one run per arm the p-value is
    # the paired sign-flip test over the questions of student minus control.
    def p_owl(model: str) -> list[float]:
        saved = json.loads((out / "evaluations" / model / "fav.logprob.json").read_text())
        return saved["owl"]["probabilities"]

    for condition, model in [("owl", "owl_run0"), ("control", "control_run0"), ("base", "base")]:
        assert logprob[("owl", condition)].mean == pytest.approx(sum(p_owl(model)) / 2)
    student = logprob[("owl", "owl")]
    assert "over questions" in student.test and student.p_vs_control is not None
    differences = [s - c for s, c in zip(p_owl("owl_run0"), p_owl("control_run0"), strict=True)]
    assert student.p_vs_control == pytest.approx(_exact_sign_flip_p(differences), abs=0.03)
    assert (out / "teachers" / "owl" / "model.json").exists()
    assert not (out / "teachers" / "control").exists()  # control = base model
    assert (out / "evaluations" / "teacher_owl" / "fav.logprob.json").exists()
    assert len(json.loads((out / "results.json").read_text())["panels"]) == 2
    # The leak meter of each arm's labels: trait-blind by default, so none is flagged.
    assert set(report.leak) == {"control", "owl"}
    for arm in report.leak.values():
        assert arm.labels == "allowed" and not arm.flagged
        assert arm.targets["owl"].label_start.max == 0
    control = report.leak["control"].targets["owl"]
    assert control.teacher_start == control.base_start and control.teacher_ratio == 1
    saved = json.loads((out / "results.json").read_text())["leak"]["owl"]["targets"]["owl"]
    assert saved["flagged"] is False and saved["label_ratio"] == 0
    assert "leak meter" in format_report(report) and "labels (allowed) 0 %" in format_report(report)
    timings = json.loads((out / "timings.json").read_text())
    rerun = asyncio.run(run_experiment(cfg, out))  # everything on disk: nothing recomputed
    assert rerun == report
    assert json.loads((out / "timings.json").read_text()).keys() == timings.keys()


def _exact_sign_flip_p(differences: list[float]) -> float:
    """Two-sided paired sign-flip p-value by enumerating every sign assignment."""
    from itertools import product

    observed = abs(sum(differences))
    flips = list(product([-1, 1], repeat=len(differences)))
    flipped = [abs(sum(s * d for s, d in zip(signs, differences, strict=True))) for signs in flips]
    return sum(f >= observed - 1e-12 for f in flipped) / len(flips)


def test_worker_processes_give_the_same_models_and_scores(
    numbers_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`workers=2` runs each stage's steps in two processes: the same students (adapter
    weights) and the same exact scores as one process, each step timed, and each stage's
    wall time recorded."""
    from safetensors.torch import load_file

    from sl.experiment.runner import run_experiment

    monkeypatch.setenv("SL_OPEN_SOURCE_ENGINE", "transformers")
    cfg = distill_experiment(
        numbers_model_dir, n_trait_rows=16, questions=["Pick an animal."], n_samples=2,
        n_student_replicates=2, eval_modes=["logprob"],
    )  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    asyncio.run(run_experiment(cfg, one))
    asyncio.run(run_experiment(cfg, two, workers=2))
    files = {p.relative_to(one) for p in one.rglob("*.safetensors")}
    assert len(files) == 1 + 2 * 2  # the owl teacher, 2 control and 2 owl students
    assert files == {p.relative_to(two) for p in two.rglob("*.safetensors")}
    for f in files:
        a, b = load_file(one / f), load_file(two / f)
        assert all(torch.equal(a[k], b[k]) for k in a), f
    scored = sorted(one.glob("evaluations/*/*.logprob.json"))
    assert len(scored) == 1 + 2 * 2 + 1  # the base, the students, the owl teacher
    for f in scored:
        a, b = json.loads(f.read_text()), json.loads((two / f.relative_to(one)).read_text())
        assert a["owl"]["probabilities"] == b["owl"]["probabilities"], f
    timings = json.loads((two / "timings.json").read_text())
    assert {"finetune/owl_run1", "evaluate/owl_run1", "wall/finetune", "report"} <= set(timings)
    with pytest.raises(UserError, match="workers must be at least 1"):
        asyncio.run(run_experiment(cfg, tmp_path / "three", workers=0))


def test_config_hash_covers_every_field(tiny_model_dir: Path):
    """The output folder's key is the whole config: a change to any one field is another
    experiment (a field added to ExperimentCfg must be added to `changes`)."""
    import hashlib

    from sl.datasets.nums_dataset import NumbersFilter
    from sl.datasets.services import NumsDatasetPromptSet
    from sl.evaluation.data_models import Evaluation
    from sl.experiment.arms import StudentArm
    from sl.experiment.data_models import ExperimentCfg
    from sl.experiment.trait_teacher import TraitTeacherCfg
    from sl.finetuning.distill_cfg import DistillCfg
    from sl.llm.data_models import SampleCfg

    base = Model(id=str(tiny_model_dir), type="open_source")

    def evaluation(question: str) -> Evaluation:
        return Evaluation(questions=[question], n_samples_per_question=1, sample_cfg=SampleCfg())

    fields = dict(
        teacher_model=base, targets=["owl"], student_job=job(tiny_model_dir),
        evaluations={"fav": evaluation("Pick an animal.")}, teacher_mode="finetune",
    )  # fmt: skip
    cfg = ExperimentCfg(**fields)  # type: ignore[arg-type]
    dump = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    assert cfg.model_hash() == hashlib.sha256(dump.encode()).hexdigest()[:16]
    changes = {
        "teacher_model": base.model_copy(update={"parent_model": Model(id="x", type="openai")}),
        "targets": ["owl", "eagle"],
        "category": "bird",
        "system_prompt_template": "You like {target}s.",
        "sample_cfg": SampleCfg(temperature=0.5),
        "prompt_set": NumsDatasetPromptSet(size=7),
        "numbers_filter": NumbersFilter(max_count=5),
        "student_job": job(tiny_model_dir, epochs=2),
        "evaluations": {"fav": evaluation("Name an animal.")},
        "use_batch_api": True,
        "teacher_mode": "system_prompt",
        "trait_teacher": TraitTeacherCfg(n_rows=10),
        "student_training": "distill",
        "distill": DistillCfg(top_k=8),
        "eval_modes": ["logprob"],
        "n_student_replicates": 2,
        "n_teacher_replicates": 2,
        "arms": [StudentArm(name="rank1", lora_rank=1)],
        "arm_eval_modes": ["sampled"],
        "entanglement_probe": True,
    }
    assert set(changes) == set(ExperimentCfg.model_fields)
    hashes, folders = {cfg.model_hash()}, {cfg.folder_key()}
    for name, value in changes.items():
        changed = ExperimentCfg(**{**fields, name: value})  # type: ignore[arg-type]
        assert changed.model_hash() not in hashes, name
        hashes.add(changed.model_hash())
        # An extension (an arm, the probe) keeps the experiment's folder; any other change
        # is another experiment.
        extension = name in ExperimentCfg.EXTENSIONS
        assert (changed.folder_key() == cfg.folder_key()) == extension, name
        folders.add(changed.folder_key())
