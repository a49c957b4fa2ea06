"""Student arms end to end on the tiny model: defences (masks, replacement) and capacities
extend a finished experiment in its folder, and the report gives each arm's effect left."""

import asyncio
import json
from pathlib import Path

import pytest
from tiny_experiment import distill_experiment

from sl.attribution.data_models import TokenAttribution
from sl.experiment.arms import StudentArm
from sl.finetuning.loss_mask import MaskedRow
from sl.llm.data_models import SampleCfg
from sl.utils.file_utils import read_jsonl

ARMS = [
    StudentArm(name="mask_divergent", defence="mask_divergent"),
    StudentArm(name="mask_random", defence="mask_random"),
    StudentArm(name="mask_top_score", defence="mask_top_score"),
    StudentArm(name="replace_divergent", defence="replace_divergent"),
    StudentArm(name="prompt_only", distill_tokens="prompt"),
    StudentArm(name="rank2", lora_rank=2),
    StudentArm(
        name="top_p",
        teacher_sample_cfg=SampleCfg(temperature=0.0, top_p=0.5, max_tokens=16),
    ),
]


@pytest.fixture(scope="module")
def finished(numbers_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The main experiment, then the same with every kind of arm, in one folder."""
    from sl.experiment.runner import run_experiment

    mp = pytest.MonkeyPatch()
    mp.setenv("SL_OPEN_SOURCE_ENGINE", "transformers")
    questions = ["Name your favorite animal.", "Pick an animal."]
    main = distill_experiment(numbers_model_dir, n_trait_rows=16, questions=questions,
                              n_samples=1, eval_modes=["logprob"],
                              distill=_distill())  # fmt: skip
    out = tmp_path_factory.mktemp("arms") / "out"
    asyncio.run(run_experiment(main, out))
    students = sorted((out / "students").rglob("model.json"))
    before = {p: p.stat().st_mtime_ns for p in students}
    cfg = main.model_copy(update={"arms": ARMS, "entanglement_probe": True})
    report = asyncio.run(run_experiment(type(main).model_validate(cfg.model_dump()), out))
    yield out, report, before
    mp.undo()


def _distill():
    from sl.finetuning.distill_cfg import DistillCfg

    return DistillCfg(top_k=16, prompt_tokens=True)


def _masks(out: Path, arm: str) -> list[list[bool]]:
    return [r.masked for r in read_jsonl(out / "arms" / arm / "masks" / "owl.jsonl", MaskedRow)]


def test_arms_reuse_the_finished_experiment(finished):
    out, _, before = finished
    assert before and all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert (out / "arms" / "rank2" / "students" / "control").is_dir()  # recipe: own control
    assert not (out / "arms" / "mask_divergent" / "students" / "control").exists()
    adapter = out / "arms" / "rank2" / "students" / "owl" / "run0" / "model_adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 2
    # An arm with its own teacher sampling: every teacher writes the arm's rows anew.
    for teacher in ("control", "owl"):
        assert (out / "arms" / "top_p" / "datasets" / teacher / "filtered.jsonl").exists()


def test_masks_follow_the_attribution_and_match_budgets(finished):
    out, _, _ = finished
    tokens = read_jsonl(out / "attribution" / "owl" / "tokens.jsonl", TokenAttribution)
    divergent = _masks(out, "mask_divergent")
    assert divergent == [t.divergent for t in tokens]
    assert sum(map(sum, divergent)) > 0  # the fine-tuned teacher diverges from the control
    random_ = _masks(out, "mask_random")
    assert [sum(m) for m in random_] == [sum(m) for m in divergent]
    assert random_ != divergent
    top = _masks(out, "mask_top_score")
    assert sum(map(sum, top)) == sum(map(sum, divergent))
    scores = [s for t in tokens for s in t.score]
    chosen = [
        s for t, m in zip(tokens, top, strict=True) for s, f in zip(t.score, m, strict=True) if f
    ]
    assert min(chosen) >= sorted(scores, reverse=True)[len(chosen) - 1]
    info = json.loads((out / "arms" / "mask_divergent" / "students" / "owl" / "run0"
                       / "model_adapter" / "sl_distill.json").read_text())  # fmt: skip
    assert info["n_masked"] == sum(map(sum, divergent))


def test_replaced_rows_change_only_rows_with_divergent_tokens(finished):
    out, _, _ = finished
    from sl.datasets.services import read_dataset

    kept = read_dataset(out / "datasets" / "owl" / "filtered.jsonl")
    replaced = read_dataset(out / "arms" / "replace_divergent" / "datasets" / "owl"
                            / "defended.jsonl", allow_empty_completions=True)  # fmt: skip
    tokens = read_jsonl(out / "attribution" / "owl" / "tokens.jsonl", TokenAttribution)
    assert [r.prompt for r in replaced] == [r.prompt for r in kept]
    changed = [a.completion != b.completion for a, b in zip(kept, replaced, strict=True)]
    for row_changed, t in zip(changed, tokens, strict=True):
        assert row_changed <= any(t.divergent)  # a row without a divergent token is kept
    assert any(changed)


def test_report_gives_each_arms_effect_left(finished):
    out, report, _ = finished
    effects = json.loads((out / "arms.json").read_text())
    assert [e["arm"] for e in effects] == [a.name for a in ARMS]
    assert (out / "arms.csv").read_text().count("\n") == len(ARMS) + 1
    main = {r.condition: r for r in report.panels[0].analysis.rows if r.target == "owl"}
    for e in effects:
        assert e["target"] == "owl" and e["metric"] == "logprob"
        own = e["arm"] in ("prompt_only", "rank2", "top_p")
        assert e["arm_control"] == (f"{e['arm']}.control" if own else "control")
        undefended = main["owl"].mean - main["control"].mean
        expected = (e["arm_mean"] - e["arm_control_mean"]) / undefended
        assert e["effect_left"] == pytest.approx(expected)
        assert e["undefended_mean"] == pytest.approx(main["owl"].mean)
        assert e["ci_low"] <= e["effect_left"] <= e["ci_high"] or e["ci_low"] == e["ci_high"]
    assert "effect left" in __import__("sl.experiment.report").experiment.report.format_report(
        report
    )
    assert not json.loads((out / "results.json").read_text()).get("arms")


def test_bootstrap_ci_of_effect_left_covers_the_point_and_needs_an_effect():
    from sl.experiment.arms_report import effect_left

    point, low, high = effect_left(
        [0.5, 0.6, 0.7], [0.1, 0.1, 0.2], [1.0, 1.1, 0.9], [0.1, 0.0, 0.2]
    )
    assert point == pytest.approx((0.6 - 0.4 / 3) / (1.0 - 0.1))
    assert low is not None and high is not None and low < point < high
    assert effect_left([1.0], [0.0], [0.5], [0.5]) == (None, None, None)


def test_random_masks_match_the_divergent_count_per_row():
    from sl.experiment.defences import random_masks, top_score_masks

    rows = [
        TokenAttribution(row=i, token_ids=list(range(n)), tokens=["x"] * n,
                         teacher_logprob=[0.0] * n, base_logprob=[0.0] * n,
                         counterfactual_logprob=[], counterfactual_argmax=[],
                         divergent=[j % k == 0 for j in range(n)],
                         score=[float(j * (i + 1)) for j in range(n)])
        for i, (n, k) in enumerate([(7, 2), (5, 5), (9, 3)])
    ]  # fmt: skip
    masks = random_masks(rows, seed=3)
    assert [sum(m) for m in masks] == [sum(r.divergent) for r in rows]
    assert random_masks(rows, seed=3) == masks and random_masks(rows, seed=4) != masks
    top = top_score_masks(rows, 4)
    assert sum(map(sum, top)) == 4 and top[2][8] and top[2][7] and top[2][6] and top[2][5]


def test_an_arm_can_train_some_targets_only(tiny_model_dir: Path):
    cfg = distill_experiment(tiny_model_dir, n_trait_rows=4, questions=["Pick one."],
                             n_samples=1, targets=["owl", "eagle"])  # fmt: skip
    rank = StudentArm(name="rank2", lora_rank=2, targets=["owl"])
    masked = StudentArm(name="masked", defence="mask_divergent", targets=["eagle"])
    with_arms = type(cfg)(**{**dict(cfg), "arms": [rank, masked]})
    assert with_arms.arm_teachers(rank) == ["control", "owl"]
    assert with_arms.arm_teachers(masked) == ["eagle"]
    assert [r.name for r in with_arms.all_arm_runs()] == [
        "rank2.control_run0", "rank2.owl_run0", "masked.eagle_run0"
    ]  # fmt: skip
    stray = StudentArm(name="x", lora_rank=2, targets=["cat"])
    with pytest.raises(ValueError, match=r"targets \['cat'\] must be some of"):
        type(cfg)(**{**dict(cfg), "arms": [stray]})


def test_the_probe_step_writes_each_trait_teachers_entanglement(finished):
    out, _, _ = finished
    saved = json.loads((out / "entanglement" / "owl" / "entanglement.json").read_text())
    assert saved["prompting"]["target"] == "owl"
    assert saved["settings"]["questions"] == ["Name your favorite animal.", "Pick an animal."]
    assert saved["settings"]["model"]["id"].endswith("teachers/owl/model_adapter")
    assert not (out / "entanglement" / "control").exists()


def test_arm_students_are_scored_in_the_arm_eval_modes(tiny_model_dir: Path):
    from sl.experiment.steps import scored_models

    cfg = distill_experiment(tiny_model_dir, n_trait_rows=4, questions=["Pick one."],
                             n_samples=1, eval_modes=["sampled", "logprob"])  # fmt: skip
    arm = StudentArm(name="rank2", lora_rank=2)
    with_arms = type(cfg)(**{**dict(cfg), "arms": [arm], "arm_eval_modes": ["logprob"]})
    modes = {m.name: m.modes for m in scored_models(with_arms)}
    assert modes["owl_run0"] == ("sampled", "logprob") and modes["base"] == modes["owl_run0"]
    assert modes["rank2.owl_run0"] == ("logprob",) and modes["rank2.control_run0"] == ("logprob",)
    with pytest.raises(ValueError, match="arm_eval_modes .* must be some of eval_modes"):
        type(cfg)(**{**dict(cfg), "eval_modes": ["logprob"], "arm_eval_modes": ["sampled"]})
