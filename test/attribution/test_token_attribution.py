"""Token attribution (`sl.attribution`, `scripts/analyze_tokens.py`) on the tiny models: the
batched log-probs, greedy tokens and `divergent` equal plain per-row, per-model forward
passes; the outputs are guarded (reused, resumed, another run refused); the bad inputs end
in one line with nothing written; a row that does not re-tokenize is counted."""

import json
import shutil

import pytest
from loguru import logger
from script_runner import assert_user_error, run

from sl.attribution.data_models import ModelContext, TokenAttribution
from sl.attribution.services import run_token_attribution
from sl.attribution.summary import summarize
from sl.errors import UserError
from sl.external.torch_models import chat_prompt_ids, load_causal_lm
from sl.llm.data_models import Model

ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
ROWS = [
    {"prompt": "continue 1, 2, 3", "completion": "1, 2, 3"},
    {"prompt": "Here is a list: 145, 267. Add up to 4 more numbers.", "completion": "1, 2, 3"},
    {"prompt": "continue 7, 8", "completion": "912, 40, 5, 88, 613"},
    {"prompt": "more numbers please", "completion": ""},
    {"prompt": "continue 300, 301, 302, 303", "completion": "77"},
]
EAGLE = "You love eagles. You think about eagles all the time."


def _open(path) -> Model:
    return Model(id=str(path), type="open_source")


def _dataset(tmp_path, rows=ROWS):
    path = tmp_path / "filtered.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def models(tiny_model_dir, tiny_lora_dir, numbers_model_dir):
    """(teacher, base, counterfactuals): a prompted LoRA teacher on the tiny model; the numbers
    model as the base and as two counterfactuals, in the base's context (one scorer shared
    with the base) and with a system prompt (it writes "1, 2, 3", so some tokens of the rows
    are its greedy choice and some are not)."""
    teacher = ModelContext(
        model=Model(id=str(tiny_lora_dir), type="open_source", parent_model=_open(tiny_model_dir)),
        system_prompt="You love owls.",
    )
    numbers = _open(numbers_model_dir)
    cfs = [ModelContext(model=numbers), ModelContext(model=numbers, system_prompt=EAGLE)]
    return teacher, numbers, cfs


def _plain(context: ModelContext, rows) -> list[tuple[list[float], list[int]]]:
    """Per row: each completion token's log-prob and the argmax, from one unpadded forward
    pass of the whole sequence with full fp32 logits."""
    import torch

    lm = load_causal_lm(context.model, dtype="float32")
    out = []
    for r in rows:
        prompt = chat_prompt_ids(lm.tokenizer, r["prompt"], context.system_prompt)
        comp = lm.tokenizer(r["completion"], add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = lm.module(input_ids=torch.tensor([prompt + comp])).logits[0]
        logp = logits.float().log_softmax(-1)[len(prompt) - 1 : len(prompt) - 1 + len(comp)]
        out.append((logp[torch.arange(len(comp)), comp].tolist(), logp.argmax(-1).tolist()))
    return out


def _close(a: list[float], b: list[float]) -> bool:
    return all(abs(x - y) <= 1e-4 * max(abs(y), 1e-6) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batched_attribution_equals_plain_forward_passes(models, tmp_path, batch_size):
    teacher, base, cfs = models
    summary = run_token_attribution(_dataset(tmp_path), teacher, base, cfs, tmp_path / "out",
                                    batch_size=batch_size)  # fmt: skip
    lines = [TokenAttribution.model_validate_json(x)
             for x in (tmp_path / "out" / "tokens.jsonl").read_text().splitlines()]  # fmt: skip
    assert [r.row for r in lines] == list(range(len(ROWS)))
    want_teacher, want_base = _plain(teacher, ROWS), _plain(ModelContext(model=base), ROWS)
    want_cfs = [_plain(cf, ROWS) for cf in cfs]
    for i, r in enumerate(lines):
        assert len(r.token_ids) == len(want_teacher[i][0]) and r.retokenized
        assert _close(r.teacher_logprob, want_teacher[i][0])
        assert _close(r.base_logprob, want_base[i][0])
        assert _close(
            r.score, [t - b for t, b in zip(want_teacher[i][0], want_base[i][0], strict=True)]
        )
        for c, want in enumerate(want_cfs):
            assert _close(r.counterfactual_logprob[c], want[i][0])
            assert r.counterfactual_argmax[c] == want[i][1]
        expected = [any(w[i][1][k] != t for w in want_cfs) for k, t in enumerate(r.token_ids)]
        assert r.divergent == expected
    flags = [d for r in lines for d in r.divergent]
    assert any(flags) and not all(flags)  # both kinds occur: the comparison has power
    assert summary["n_tokens"] == len(flags) and summary["n_divergent"] == sum(flags)


def test_summary_counts_by_token_and_position():
    def row(i, ids, div, retok=True):
        n = len(ids)
        return TokenAttribution(
            row=i, token_ids=ids, tokens=[str(t) for t in ids], teacher_logprob=[-1.0] * n,
            base_logprob=[-2.0] * n, counterfactual_logprob=[[-3.0] * n],
            counterfactual_argmax=[[t + 1 if d else t for t, d in zip(ids, div, strict=True)]],
            divergent=div, score=[1.0] * n, retokenized=retok,
        )  # fmt: skip

    s = summarize([row(0, [5, 6, 5], [True, False, True]), row(1, [5], [False], False)], ["cf"])
    assert (s["n_rows"], s["n_tokens"], s["n_divergent"]) == (2, 4, 2)
    assert s["fraction_divergent"] == 0.5 and s["rows_not_retokenized"] == [1]
    assert s["top_divergent_tokens"] == [{"token": "5", "token_id": 5, "n_divergent": 2,
                                          "n_tokens": 3, "fraction_divergent": 2 / 3}]  # fmt: skip
    by_position = [(p["position"], p["n_tokens"], p["n_divergent"])
                   for p in s["divergence_by_position"]]  # fmt: skip
    assert by_position == [(0, 2, 1), (1, 1, 0), (2, 1, 1)]
    assert s["counterfactual_differs"] == [{"model": "cf", "n_tokens": 2, "fraction": 0.5}]


def test_a_finished_run_is_reused_and_an_interrupted_one_resumes(models, tmp_path):
    teacher, base, cfs = models
    data, out = _dataset(tmp_path), tmp_path / "out"
    first = run_token_attribution(data, teacher, base, cfs, out, batch_size=2)
    tokens = (out / "tokens.jsonl").read_text()
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="INFO")
    try:
        assert run_token_attribution(data, teacher, base, cfs, out, batch_size=2) == first
        assert any("already complete" in m for m in messages)
        (out / "tokens.jsonl").write_text("".join(tokens.splitlines(True)[:2]) + '{"row": 2, ')
        messages.clear()
        assert run_token_attribution(data, teacher, base, cfs, out, batch_size=2) == first
    finally:
        logger.remove(handler)
    assert any("resuming after 2 rows" in m for m in messages)
    assert (out / "tokens.jsonl").read_text() == tokens


def test_a_row_that_does_not_retokenize_is_counted_not_dropped(models, tmp_path):
    teacher, base, cfs = models
    rows = [*ROWS, {"prompt": "continue 1, 2", "completion": "3, 4<|im_end|>5"}]
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        summary = run_token_attribution(_dataset(tmp_path, rows), teacher, base, cfs,
                                        tmp_path / "out")  # fmt: skip
    finally:
        logger.remove(handler)
    assert summary["n_rows"] == len(rows)
    assert summary["n_rows_not_retokenized"] == 1 and summary["rows_not_retokenized"] == [5]
    last = json.loads((tmp_path / "out" / "tokens.jsonl").read_text().splitlines()[-1])
    assert last["row"] == 5 and last["retokenized"] is False and last["token_ids"]
    assert any("1 rows' completions do not re-tokenize" in m and "rows 5" in m for m in messages)


def test_a_counterfactual_with_another_tokenizer_is_refused(models, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    teacher, base, _ = models
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["zebra-token"])
    tokenizer.save_pretrained(other)
    with pytest.raises(UserError, match=r"^counterfactual .*other's tokenizer \(\d+ tokens\) "
                       r"differs from the teacher .*: token attribution") as e:  # fmt: skip
        run_token_attribution(_dataset(tmp_path), teacher, base,
                              [ModelContext(model=_open(other))], tmp_path / "out")  # fmt: skip
    assert e.value.param == "counterfactual" and not (tmp_path / "out").exists()


def test_an_openai_counterfactual_is_refused_before_anything_is_read(models, tmp_path):
    teacher, base, _ = models
    gpt = ModelContext(model=Model(id="gpt-4.1-nano", type="openai"))
    with pytest.raises(UserError, match="^counterfactual gpt-4.1-nano is an OpenAI model") as e:
        run_token_attribution(tmp_path / "missing.jsonl", teacher, base, [gpt], tmp_path / "out")
    assert e.value.param == "counterfactual" and not (tmp_path / "out").exists()


def test_script_writes_both_files_and_refuses_another_runs_folder(
    tiny_model_dir, tiny_lora_dir, numbers_model_dir, tmp_path
):
    teacher_json = tmp_path / "owl" / "model.json"
    teacher_json.parent.mkdir()
    teacher_json.write_text(json.dumps({"id": str(tiny_lora_dir), "type": "open_source",
                                        "parent_model": {"id": str(tiny_model_dir),
                                                         "type": "open_source"}}))  # fmt: skip
    out = tmp_path / "attribution"
    args = ["--dataset", _dataset(tmp_path), "--teacher", teacher_json,
            "--system_prompt", "You love owls.", "--counterfactual", numbers_model_dir,
            "--counterfactual", tiny_model_dir, "--counterfactual_system_prompt", "",
            "--counterfactual_system_prompt", EAGLE, "--base", tiny_model_dir,
            "--output_dir", out, "--batch_size", "2"]  # fmt: skip
    proc = run("analyze_tokens.py", *args, env_extra=ENV, timeout=300)
    assert f"{len(ROWS)} rows" in proc.stdout and "divergent" in proc.stdout
    lines = [json.loads(x) for x in (out / "tokens.jsonl").read_text().splitlines()]
    assert len(lines) == len(ROWS)
    for line in lines:
        assert set(line) == {"row", "token_ids", "tokens", "teacher_logprob", "base_logprob",
                             "counterfactual_logprob", "counterfactual_argmax", "divergent",
                             "score", "retokenized"}  # fmt: skip
        n = len(line["token_ids"])
        assert all(len(line[k]) == n for k in ("tokens", "teacher_logprob", "base_logprob",
                                               "divergent", "score"))  # fmt: skip
        assert [len(x) for x in line["counterfactual_argmax"]] == [n, n]
    assert "".join(lines[2]["tokens"]) == ROWS[2]["completion"]
    summary = json.loads((out / "summary.json").read_text())
    assert {"n_rows", "n_tokens", "n_divergent", "fraction_divergent", "top_divergent_tokens",
            "divergence_by_position", "n_rows_not_retokenized"} <= set(summary)  # fmt: skip
    assert summary["counterfactuals"][1]["system_prompt"] == EAGLE
    assert summary["teacher"]["system_prompt"] == "You love owls."
    before = (out / "tokens.jsonl").read_text(), (out / "summary.json").read_text()
    other = [*args[:8], *args[14:]]  # one counterfactual only (the numbers model)
    proc = run("analyze_tokens.py", *other, env_extra=ENV, check=False, timeout=300)
    assert_user_error(proc, "--output_dir", "belongs to a different run", "counterfactuals")
    assert ((out / "tokens.jsonl").read_text(), (out / "summary.json").read_text()) == before


def test_script_refuses_an_openai_teacher_in_one_line(tiny_model_dir, tmp_path):
    teacher_json = tmp_path / "model.json"
    teacher_json.write_text(json.dumps({"id": "gpt-4.1-nano", "type": "openai"}))
    out = tmp_path / "attribution"
    proc = run("analyze_tokens.py", "--dataset", _dataset(tmp_path), "--teacher", teacher_json,
               "--base", tiny_model_dir, "--output_dir", out, env_extra=ENV, check=False)  # fmt: skip
    assert_user_error(proc, "--teacher gpt-4.1-nano is an OpenAI model",
                      "does not return log-probs of given tokens", "open models")  # fmt: skip
    assert not out.exists()


def test_a_missing_model_is_an_error_about_its_argument(models, tmp_path):
    teacher, _, cfs = models
    with pytest.raises(UserError, match="^base model folder .*nope does not exist") as e:
        run_token_attribution(_dataset(tmp_path), teacher, _open(tmp_path / "nope"), cfs,
                              tmp_path / "out")  # fmt: skip
    assert e.value.param == "base" and not (tmp_path / "out").exists()
