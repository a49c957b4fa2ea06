"""The entanglement probe on the tiny model: exact P(number) (batch size does not matter, a
plain forward pass agrees), the frequency-matched baselines, the artifact guard, and
`scripts/probe_entanglement.py` end to end and refusing an OpenAI model."""

import json
from pathlib import Path

import numpy as np
import pytest
from script_runner import assert_user_error, run

from sl.errors import UserError
from sl.evaluation.entanglement import (
    EntanglementCfg,
    base_bins,
    check_cfg,
    draw_matched,
    matched_log_ratio,
    number_probabilities,
    probe_entanglement,
    rank_numbers,
    target_probability_per_number,
)
from sl.evaluation.logprob import variant_token_ids
from sl.llm.data_models import Model

QUESTIONS = ["Name your favorite animal.", "Pick an animal in one word."]
NUMBER_QUESTIONS = ["What is your favorite number?", "Pick a number.", "Your number, please."]
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _models(base_dir: Path, lora_dir: Path) -> tuple[Model, Model]:
    base = Model(id=str(base_dir), type="open_source")
    return Model(id=str(lora_dir), type="open_source", parent_model=base), base


@pytest.fixture(scope="module")
def lora_lm(tiny_model_dir, tiny_lora_dir):
    from sl.external.torch_models import load_causal_lm

    return load_causal_lm(_models(tiny_model_dir, tiny_lora_dir)[0], "cpu", "float32")


def _plain_probability(lm, tokenizer, number: int, questions: list[str], system: str | None):
    """The definition: one full forward of prompt + spelling, per question and spelling."""
    import torch

    from sl.external.torch_models import chat_prompt_ids

    per_question = []
    for question in questions:
        prompt, total = chat_prompt_ids(tokenizer, question, system), 0.0
        for seq in variant_token_ids(tokenizer, str(number)):
            with torch.inference_mode():
                logits = lm(input_ids=torch.tensor([prompt + seq])).logits[0].double()
            logp = logits.log_softmax(-1)[len(prompt) - 1 : len(prompt) - 1 + len(seq)]
            total += float(logp[torch.arange(len(seq)), torch.tensor(seq)].sum().exp())
        per_question.append(total)
    return float(np.mean(per_question))


def test_number_probabilities_equal_a_plain_forward_pass(lora_lm):
    numbers = [0, 7, 42, 305]
    system = "You love owls."
    got = number_probabilities(
        lora_lm.module, lora_lm.tokenizer, numbers, NUMBER_QUESTIONS, system, batch_size=2
    )
    assert all(len(v) > 1 for v in variant_token_ids(lora_lm.tokenizer, "305"))  # multi-token
    for n, p in zip(numbers, got, strict=True):
        want = _plain_probability(lora_lm.module, lora_lm.tokenizer, n, NUMBER_QUESTIONS, system)
        assert abs(p - want) / want < 1e-4, (n, p, want)


def test_ranking_is_invariant_to_batch_size(lora_lm):
    numbers = list(range(60))
    one, many, every = (
        number_probabilities(lora_lm.module, lora_lm.tokenizer, numbers, NUMBER_QUESTIONS, None, b)
        for b in (1, 2, None)
    )
    np.testing.assert_allclose(one, many, rtol=1e-5)
    np.testing.assert_allclose(one, every, rtol=1e-5)
    p_base = np.linspace(1e-4, 1e-3, len(numbers))[::-1].copy()
    rows_one, _, order_one = rank_numbers(numbers, one, p_base, 5)
    rows_many, _, order_many = rank_numbers(numbers, many, p_base, 5)
    assert order_one == order_many
    assert [r["number"] for r in rows_one] == [r["number"] for r in rows_many]
    assert len(set(np.round(one, 12))) > 50  # distinct values: the order is meaningful


def test_prompted_p_target_with_all_questions_in_one_batch_equals_one_at_a_time(lora_lm):
    model = Model(id="tiny", type="open_source")
    questions = [*QUESTIONS, "Which animal do you like best?", "Your animal, in a word."]
    cfg = EntanglementCfg(model=model, base=model, target="owl", questions=questions)
    numbers = [7, 42, 305]
    batched, single = (
        target_probability_per_number(lora_lm.module, lora_lm.tokenizer, cfg, numbers, b)
        for b in (None, 1)
    )
    for n in numbers:
        np.testing.assert_allclose(batched[n], single[n], rtol=1e-4)
        assert len(set(batched[n])) == len(questions)  # questions differ: the order matters


def test_bins_are_equal_count_and_ordered_by_base_probability():
    p_base = np.random.default_rng(0).random(50)
    bins = base_bins(p_base, 10)
    assert np.bincount(bins).tolist() == [5] * 10
    for b in range(9):
        assert p_base[bins == b].max() < p_base[bins == b + 1].min()


def test_matched_baseline_is_its_bin_without_itself():
    bins = np.array([0, 0, 0, 1, 1, 1, 2])
    log_ratio = np.array([100.0, 1.0, 3.0, -5.0, 0.0, 2.0, 9.0])
    matched = matched_log_ratio(log_ratio, bins)
    assert matched[0] == 2.0  # median of 1 and 3: its own 100 is left out
    assert matched[1] == 51.5 and matched[3] == 1.0
    assert np.isnan(matched[6])  # alone in its bin


def test_matched_numbers_share_the_bin_and_are_outside_the_top():
    p_base = np.random.default_rng(1).random(100)
    bins = base_bins(p_base, 10)
    top = [int(i) for i in np.flatnonzero(bins == 3)[:4]] + [int(np.flatnonzero(bins == 7)[0])]
    matched = draw_matched(top, bins, seed=0)
    assert len(set(matched)) == len(matched) and not set(matched) & set(top)
    assert [int(bins[j]) for j in matched] == [int(bins[i]) for i in top]
    assert draw_matched(top, bins, seed=0) == matched  # seeded
    # A bin with no number left outside the top: the match comes from the nearest bin.
    crowded = [int(i) for i in np.flatnonzero(bins == 3)[:9]]
    last = draw_matched(crowded, bins, seed=0)
    assert [abs(int(bins[j]) - 3) for j in last] == [0] + [1] * 8


@pytest.mark.parametrize(
    ("update", "param", "needle"),
    [
        ({"base": Model(id="gpt-4.1-nano", type="openai")}, "base", "OpenAI"),
        ({"max_number": 1000}, "max_number", "use 1 to 999"),
        ({"top_k": 6}, "top_k", "use 1 to 5"),
        ({"n_bins": 0}, "n_bins", "use 1 to 10"),
        ({"prompt_template": "You love numbers."}, "prompt_template", "no {number}"),
        ({"prompt_template": "You love {n}."}, "prompt_template", "cannot be filled"),
        ({"target": " "}, "target", "empty"),
        ({"questions": []}, "questions", "at least one"),
    ],
)
def test_settings_the_probe_cannot_run_are_refused_naming_the_argument(update, param, needle):
    model = Model(id="some/model", type="open_source")
    cfg = EntanglementCfg(model=model, base=model, target="owl", max_number=9, top_k=5)
    check_cfg(cfg)
    with pytest.raises(UserError, match=needle) as raised:
        check_cfg(cfg.model_copy(update=update))
    assert raised.value.param == param and str(raised.value).startswith(param)


def test_a_finished_probe_is_read_back_and_other_settings_are_refused(
    tiny_model_dir, tiny_lora_dir, tmp_path
):
    model, base = _models(tiny_model_dir, tiny_lora_dir)
    cfg = EntanglementCfg(
        model=model, base=base, target="owl", max_number=19, top_k=2, n_bins=4,
        questions=QUESTIONS, number_questions=NUMBER_QUESTIONS,
    )  # fmt: skip
    first = probe_entanglement(cfg, tmp_path, batch_size=2)
    written = (tmp_path / "entanglement.json").stat().st_mtime_ns
    (tmp_path / "entanglement.png").unlink()
    assert probe_entanglement(cfg, tmp_path, batch_size=3) == first
    assert (tmp_path / "entanglement.json").stat().st_mtime_ns == written
    assert (tmp_path / "entanglement.png").is_file()  # the plot is redrawn from the JSON
    with pytest.raises(UserError, match="target"):
        probe_entanglement(cfg.model_copy(update={"target": "eagle"}), tmp_path)
    assert (tmp_path / "entanglement.json").stat().st_mtime_ns == written


def test_script_writes_the_ranking_the_prompting_and_the_plot(
    tiny_model_dir, tiny_lora_dir, tmp_path
):
    model, _ = _models(tiny_model_dir, tiny_lora_dir)
    model_json, questions = tmp_path / "model.json", tmp_path / "questions.txt"
    model_json.write_text(model.model_dump_json())
    questions.write_text("\n".join(QUESTIONS) + "\n\n")
    out = tmp_path / "probe"
    args = ["--model", model_json, "--base", tiny_model_dir, "--target", "owl",
            "--output_dir", out, "--questions", questions, "--max_number", 39, "--top_k", 3,
            "--n_bins", 5]  # fmt: skip
    proc = run("probe_entanglement.py", *args, env_extra=ENV, timeout=300)
    assert "top entangled numbers:" in proc.stdout
    result = json.loads((out / "entanglement.json").read_text())
    assert (out / "entanglement.png").stat().st_size > 10_000
    rows = result["numbers"]
    assert sorted(r["number"] for r in rows) == list(range(40))
    ratios = [r["log_ratio"] for r in rows]
    assert ratios == sorted(ratios, reverse=True)
    for r in rows:
        assert r["log_ratio"] == pytest.approx(np.log(r["p_model"] / r["p_base"]))
    prompting = result["prompting"]
    pairs = prompting["pairs"]
    assert [p["top"] for p in pairs] == [r["number"] for r in rows[:3]]
    assert not {p["matched"] for p in pairs} & {p["top"] for p in pairs}
    assert all(p["bin"] == p["matched_bin"] for p in pairs)
    per_question = prompting["per_question"]
    assert all(len(per_question[str(p["top"])]) == len(QUESTIONS) for p in pairs)
    assert prompting["mean_top"] == pytest.approx(np.mean([p["top_p_target"] for p in pairs]))
    assert 0 < prompting["p_value"] <= 1
    assert result["settings"]["questions"] == QUESTIONS


def test_script_refuses_an_openai_model_in_one_line(tiny_model_dir, tmp_path):
    model_json = tmp_path / "nano.json"
    model_json.write_text(Model(id="gpt-4.1-nano", type="openai").model_dump_json())
    out = tmp_path / "probe"
    args = ["--model", model_json, "--base", tiny_model_dir, "--target", "owl",
            "--output_dir", out]  # fmt: skip
    proc = run("probe_entanglement.py", *args, env_extra=ENV, check=False)
    assert_user_error(proc, "--model gpt-4.1-nano", "OpenAI", "open models")
    assert not out.exists()
