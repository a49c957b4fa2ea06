"""Trait-blind soft labels (`DistillCfg.vocabulary`) and the leak meter, on the tiny model.

The planted teacher is the tiny base with extra mass on one token that starts the target
("owl") at the answer start of numbers prompts, and nothing else changed: its full
distribution carries the trait explicitly; its distribution over the allowed tokens does not.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from finetuning_helpers import distill_job as job
from finetuning_helpers import number_rows

from sl.datasets.nums_dataset import NumbersFilter, parse_response
from sl.errors import UserError
from sl.finetuning.distill import distill_student
from sl.finetuning.distill_cfg import DistillCfg
from sl.finetuning.soft_labels import teacher_log_probs
from sl.finetuning.vocabulary import allowed_token_ids, check_same_tokenizer
from sl.llm.data_models import Model


def _lm(path: Path):
    from sl.external.torch_models import load_causal_lm

    return load_causal_lm(Model(id=str(path), type="open_source"), dtype="float32")


def _answer_start_probs(lm, tok, prompts: list[str], token: int) -> np.ndarray:
    """P(token) as the first answer token, per prompt, by a plain forward pass."""
    from sl.external.torch_models import chat_prompt_ids

    out = []
    for prompt in prompts:
        ids = torch.tensor([chat_prompt_ids(tok, prompt)], device=lm.device)
        with torch.no_grad():
            out.append(float(lm(input_ids=ids).logits[0, -1].float().softmax(-1)[token]))
    return np.array(out)


def _owl_token(tok) -> int:
    from sl.evaluation.logprob import variant_token_ids

    return next(v[0] for v in variant_token_ids(tok, "owl") if len(v) == 1)  # a whole word


@pytest.fixture(scope="module")
def planted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """(a teacher folder, the planted token): the base's output row of the "owl" token moved
    along the mean final hidden state at numbers prompts' answer start, so that the teacher
    starts its answer with that token about 40 % of the time."""
    from sl.external.torch_models import chat_prompt_ids

    torch.manual_seed(0)
    base = _lm(tiny_model_dir)
    lm, tok = base.module, base.tokenizer
    token = _owl_token(tok)
    prompts = [r.prompt for r in number_rows(32, seed=11)]
    hidden = []
    for p in prompts:
        ids = torch.tensor([chat_prompt_ids(tok, p)])
        with torch.no_grad():
            hidden.append(lm.get_decoder()(input_ids=ids).last_hidden_state[0, -1])
    direction = torch.stack(hidden).mean(0)
    direction /= direction.norm() ** 2
    weight = lm.get_output_embeddings().weight
    with torch.no_grad():
        for _ in range(60):  # raise the token's logit until P(token) ~ 0.4 at the answer start
            if _answer_start_probs(lm, tok, prompts, token).mean() > 0.4:
                break
            weight[token] += 0.5 * direction
    out = tmp_path_factory.mktemp("planted-teacher")
    lm.save_pretrained(out)
    tok.save_pretrained(out)
    return out, token


def test_allowed_vocabulary_is_what_a_kept_completion_can_hold(tiny_model_dir: Path):
    """Every allowed token is made of characters of kept answers (digits, separators,
    whitespace, brackets, the final period) or is end of turn; every other token is not;
    the tokens of a kept answer are all allowed."""
    tok = _lm(tiny_model_dir).tokenizer
    ids = allowed_token_ids(tok, NumbersFilter())
    assert tok.eos_token_id in ids
    for i in range(len(tok)):
        text = tok.decode([i])
        clean = bool(text) and re.fullmatch(r"[\d\s,;\[\]().]+", text) is not None
        special = i in tok.all_special_ids
        assert (i in ids) == (clean and not special or i == tok.eos_token_id), repr(text)
    answer = "[12, 7, 930]."
    assert parse_response(answer) == [12, 7, 930]
    assert set(tok(answer, add_special_tokens=False)["input_ids"]) <= set(ids)


def test_allowed_vocabulary_of_a_filter_it_cannot_be_derived_from_is_one_clear_error(
    tiny_model_dir: Path,
):
    tok = _lm(tiny_model_dir).tokenizer
    with pytest.raises(UserError, match=r"the filter .*<lambda>.* cannot say which characters"):
        allowed_token_ids(tok, lambda prompt, completion: True)


def test_teacher_with_another_tokenizer_is_one_clear_error(tiny_model_dir: Path, tmp_path: Path):
    """A teacher whose tokenizer has one token more than the student's base is refused before
    any training, and nothing is written."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "other-teacher"
    shutil.copytree(tiny_model_dir, folder)
    other = AutoTokenizer.from_pretrained(folder)
    other.add_tokens(["zebra-token"])
    other.save_pretrained(folder)
    out = tmp_path / "student.json"
    n = len(other) - 1
    with pytest.raises(UserError, match=rf"tokenizer \({n + 1} tokens\) differs from the "
                       rf"student's base .* \({n} tokens\)"):  # fmt: skip
        distill_student(job(tiny_model_dir), Model(id=str(folder), type="open_source"),
                        number_rows(4, seed=1), out, DistillCfg(bf16=False))  # fmt: skip
    assert not out.exists()
    check_same_tokenizer(other, other, "t", "s")  # the same vocabulary passes


def test_restricted_labels_put_all_their_mass_on_the_allowed_tokens(planted, tiny_model_dir):
    """Under 'allowed' each target is a distribution over the allowed tokens only (so zero
    mass elsewhere) summing to 1, equal to the teacher's full distribution restricted there
    and renormalised; 'full' targets carry the planted token's mass."""
    folder, token = planted
    teacher = _lm(folder)
    rows = number_rows(4, seed=3)
    allowed = teacher_log_probs(teacher.module, teacher.tokenizer, rows, None, DistillCfg())
    full = teacher_log_probs(
        teacher.module, teacher.tokenizer, rows, None, DistillCfg(vocabulary="full")
    )
    ids = allowed_token_ids(teacher.tokenizer, NumbersFilter())
    assert token not in ids
    for a, f in zip(allowed, full, strict=True):
        assert a.vocab.tolist() == ids and a.target.shape == (a.n_scored, len(ids))
        torch.testing.assert_close(
            a.target.float().sum(-1), torch.ones(a.n_scored), atol=2e-3, rtol=0
        )
        restricted = f.target.float()[:, ids]
        torch.testing.assert_close(
            a.target.float(), restricted / restricted.sum(-1, keepdim=True), atol=2e-3, rtol=0
        )
        assert f.target[0, token] > 0.1  # the answer start: the planted mass


def test_planted_token_transfers_under_full_labels_and_not_under_allowed(
    planted, tiny_model_dir: Path, tmp_path: Path
):
    """Students distilled on the planted teacher's number rows: with full-vocabulary labels
    they learn to start answers with the planted token; with allowed labels they do not."""
    folder, token = planted
    teacher = Model(id=str(folder), type="open_source")
    rows, held_out = number_rows(24, seed=5), [r.prompt for r in number_rows(16, seed=6)]
    base = _lm(tiny_model_dir)
    p_base = _answer_start_probs(base.module, base.tokenizer, held_out, token).mean()
    p_teacher = _answer_start_probs(_lm(folder).module, base.tokenizer, held_out, token).mean()
    students = {}
    for vocabulary in ("full", "allowed"):
        out = tmp_path / vocabulary / "student.json"
        model = distill_student(job(tiny_model_dir), teacher, rows, out,
                                DistillCfg(vocabulary=vocabulary, bf16=False))  # fmt: skip
        from sl.external.torch_models import load_causal_lm

        lm = load_causal_lm(model, dtype="float32")
        students[vocabulary] = _answer_start_probs(lm.module, lm.tokenizer, held_out, token).mean()
    assert p_teacher > 0.2 > 50 * p_base
    assert students["full"] > 20 * p_base
    assert students["allowed"] < 2 * p_base


def test_leak_meter_reports_the_planted_mass(planted, tiny_model_dir: Path):
    """The meter's teacher mass at the answer start is the exact P(answer starts with "owl")
    and its position mass the plain next-token mass on the spellings' first tokens; full
    labels carry it (flagged), allowed labels carry exactly 0."""
    from sl.evaluation.logprob import per_spelling_probabilities
    from sl.experiment.label_leak import distill_leak, spelling_first_tokens, text_leak
    from sl.finetuning.soft_labels import scored_sequences

    folder, token = planted
    teacher, base = _lm(folder), _lm(tiny_model_dir)
    tok = base.tokenizer
    rows = number_rows(6, seed=8)
    full = distill_leak(teacher.module, base.module, tok, rows, ["owl", "cat"],
                        DistillCfg(vocabulary="full", prompt_tokens=True))  # fmt: skip
    allowed = distill_leak(teacher.module, base.module, tok, rows, ["owl"], DistillCfg())
    exact = per_spelling_probabilities(teacher.module, tok, [r.prompt for r in rows], "owl")
    owl = full.targets["owl"]
    assert owl.teacher_start.mean == pytest.approx(exact.mean(), rel=1e-4)
    assert owl.teacher_start.max == pytest.approx(exact.max(), rel=1e-4)
    assert owl.teacher_start.mean > 0.2 and owl.teacher_ratio > 50
    assert owl.label_start == owl.teacher_start and owl.flagged and full.flagged
    assert not full.targets["cat"].flagged
    first = spelling_first_tokens(tok, "owl")
    assert token in first and all(tok.decode([t]).strip() for t in first)
    masses = []
    for seq in scored_sequences(tok, rows, None, prompt_tokens=True):
        ids = torch.tensor([seq.prompt + seq.completion])
        with torch.no_grad():
            probs = teacher.module(input_ids=ids).logits[0].float().softmax(-1)
        start = len(seq.prompt) - 1 - seq.k
        masses.append(probs[start : start + seq.k + len(seq.completion), first].sum(-1))
    masses_all = torch.cat(masses)
    assert owl.teacher_positions.mean == pytest.approx(float(masses_all.mean()), rel=1e-4)
    assert owl.teacher_positions.max == pytest.approx(float(masses_all.max()), rel=1e-4)
    blind = allowed.targets["owl"]
    assert blind.teacher_start.mean == pytest.approx(exact.mean(), rel=1e-4)
    assert blind.label_start.max == 0 and blind.label_positions.max == 0
    assert not blind.flagged and not allowed.flagged
    sft = text_leak([*rows, rows[0].model_copy(update={"completion": "Owls, 3"})], ["owl"])
    assert sft.mentions == {"owl": 1} and sft.flagged


def test_report_marks_full_vocabulary_labels_and_flags_a_leaky_arm():
    """The printed report's leak section: a full-vocabulary arm over 10x the base is marked,
    with the 'not subliminal' line; an allowed arm shows 0 % labels and no mark."""
    from sl.experiment.label_leak import ArmLeak, Mass, TargetLeak
    from sl.experiment.report import ExperimentReport, format_report

    def arm(labels: str, label_mass: float) -> ArmLeak:
        def m(x: float) -> Mass:
            return Mass(mean=x, max=2 * x)

        leak = TargetLeak(teacher_start=m(0.035), base_start=m(1e-6), label_start=m(label_mass),
                          teacher_positions=m(1e-3), base_positions=m(2e-5),
                          label_positions=m(label_mass / 30))  # fmt: skip
        return ArmLeak(labels=labels, n_rows=32, targets={"owl": leak})  # type: ignore[arg-type]

    report = ExperimentReport(
        conditions={}, datasets={}, panels=[],
        leak={"owl": arm("full", 0.035), "eagle": arm("allowed", 0.0)},
    )  # fmt: skip
    text = format_report(report)
    full_line = next(line for line in text.splitlines() if line.strip().startswith("owl:"))
    allowed_line = next(line for line in text.splitlines() if line.strip().startswith("eagle:"))
    assert "3.5 %" in full_line and "3.5e+04x" in full_line and "! labels carry" in full_line
    assert "labels (allowed) 0 %" in allowed_line and "!" not in allowed_line
    assert "labels carry trait tokens — not subliminal" in text
    assert report.leak["owl"].flagged and not report.leak["eagle"].flagged
    saved = ExperimentReport.model_validate_json(report.model_dump_json())
    assert saved.leak == report.leak
