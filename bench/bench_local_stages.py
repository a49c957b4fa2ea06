"""The local stages of the main job, each against the plain approach, side by side in one run.

    .venv/bin/python bench/bench_local_stages.py                  # the issue's sizes
    .venv/bin/python bench/bench_local_stages.py --questions 10   # quicker

On SmolLM2-135M-Instruct (the offline copy), on the 50 favorite-animal questions:
- exact P(owl): `question_probabilities` (shared prefix once, each prompt once, spellings as a
  prefix tree from its KV cache) vs `per_spelling_probabilities` (one full forward per
  question and spelling); both in the scoring dtype, values compared;
- sampled evaluation, n answers of 8 tokens per question: the transformers driver (all
  questions in as few `generate` calls as fit, each prompt prefilled once) vs one
  `generate(num_return_sequences=n)` per question, same weights;
- one distillation step at batch 8 on real teacher numbers (the shipped gpt-4.1-nano rows):
  the library's step (`build_student`, `distill_loss`: output layer only at scored tokens,
  the full-vocabulary KL in row chunks, the student's base in bf16 where native, adapters
  and residual in fp32) vs the plain step (fp32, full logits at every position, KL per
  sequence), and vs the library's step in fp32; then two such steps at once in two
  processes of 1 thread each (the experiment's worker processes) vs one process of 2 threads;
  and the KL curve of `--curve_steps` steps with bf16 on vs off (the same seed and data).
Each measurement runs in its own process (model loading excluded from the time; peak RSS is
the process's, loading included) so memory figures are separate.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TEACHER_ROWS = ROOT / "test" / "fixtures" / "gpt41nano_owl_teacher_raw.jsonl"


def _model():
    from sl.llm.data_models import Model

    return Model(id=MODEL_ID, type="open_source")


def _questions(n: int) -> list[str]:
    from sl.protocol import preference_questions

    return preference_questions("favorite_animal")[:n]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def logprob(approach: str, n_questions: int) -> dict:
    from sl.evaluation.logprob import (
        per_spelling_probabilities,
        question_probabilities,
        scoring_dtype,
    )
    from sl.external.torch_models import load_causal_lm

    lm = load_causal_lm(_model(), dtype=scoring_dtype())
    questions = _questions(n_questions)
    score = question_probabilities if approach == "batched" else per_spelling_probabilities
    started = time.perf_counter()
    values = score(lm.module, lm.tokenizer, questions, "owl")
    return {"seconds": time.perf_counter() - started, "values": list(map(float, values))}


def sampled(approach: str, n_questions: int, n_samples: int) -> dict:
    import asyncio

    import torch

    from sl.external.transformers_driver import TransformersDriver
    from sl.llm.data_models import SampleCfg
    from sl.llm.services import build_simple_chat

    chats = [build_simple_chat(q) for q in _questions(n_questions)]
    cfg = SampleCfg(temperature=1.0, max_tokens=8, n=n_samples, seed=0)
    driver = TransformersDriver()
    asyncio.run(driver.batch_sample(_model(), chats[:1], [cfg.model_copy(update={"n": 1})]))
    started = time.perf_counter()
    if approach == "batched":
        out = asyncio.run(driver.batch_sample(_model(), chats, [cfg] * len(chats)))
        n_answers = sum(len(group) for group in out)
    else:
        loaded = next(iter(driver._models.values()))
        tok, n_answers = loaded.tokenizer, 0
        for chat in chats:
            text = tok.apply_chat_template(
                [{"role": "user", "content": chat.messages[-1].content}],
                tokenize=False,
                add_generation_prompt=True,
            )
            inputs = tok([text], return_tensors="pt", add_special_tokens=False).to(loaded.device)
            with torch.inference_mode():
                ids = loaded.model.generate(
                    **inputs, max_new_tokens=8, do_sample=True, temperature=1.0, top_k=0,
                    top_p=1.0, num_return_sequences=n_samples, pad_token_id=tok.pad_token_id,
                )  # fmt: skip
            n_answers += ids.shape[0]
    return {"seconds": time.perf_counter() - started, "answers": n_answers}


def _examples(
    n_rows: int, experiment_dir: str | None = None, vocabulary: Literal["allowed", "full"] = "full"
):
    """Teacher targets on number rows: a finished main job's owl teacher on its own kept rows,
    or (no folder) the system-prompted owl teacher on the shipped gpt-4.1-nano rows; over the
    full vocabulary (what the plain step computes) or the allowed tokens."""
    from sl.datasets.data_models import DatasetRow
    from sl.datasets.nums_dataset import parse_response
    from sl.datasets.services import read_dataset
    from sl.external.torch_models import load_causal_lm
    from sl.finetuning.distill_cfg import DistillCfg
    from sl.finetuning.soft_labels import teacher_log_probs
    from sl.llm.data_models import Model
    from sl.protocol import load_protocol

    if experiment_dir:
        root = Path(experiment_dir)
        rows = read_dataset(root / "datasets" / "owl" / "filtered.jsonl")
        model = Model.model_validate_json((root / "teachers" / "owl" / "model.json").read_text())
        teacher, system = load_causal_lm(model, dtype="float32"), None
    else:
        rows = []
        for line in TEACHER_ROWS.read_text().splitlines():
            row = DatasetRow.model_validate_json(line)
            if parse_response(row.completion) is not None:
                rows.append(row)
        teacher = load_causal_lm(_model(), dtype="float32")
        prompts = load_protocol("teacher_system_prompts")
        system = prompts["love"].format(target="owl", category="animal")
    examples = teacher_log_probs(
        teacher.module, teacher.tokenizer, rows[:n_rows], system,
        DistillCfg(bf16=False, prompt_tokens=experiment_dir is not None,  # as the main job
                   vocabulary=vocabulary),
    )  # fmt: skip
    return examples, teacher.tokenizer


def _student(bf16: bool):
    """The library's student (`build_student`) of SmolLM2 at r = 8, with its optimiser."""
    import torch

    from sl.finetuning.data_models import PeftCfg, UnslothFinetuningJob
    from sl.finetuning.distill import build_student
    from sl.finetuning.distill_cfg import DistillCfg

    torch.manual_seed(0)
    job = UnslothFinetuningJob(seed=0, source_model=_model(), peft_cfg=PeftCfg(r=8, lora_alpha=8))
    student = build_student(job, DistillCfg(bf16=bf16))
    params = [p for p in student.parameters() if p.requires_grad]
    return student.train(), torch.optim.AdamW(params, lr=1e-3)


def _plain_loss(student, batch, pad_id: int):
    """The plain step: fp32, logits at every position, KL gathered per sequence."""
    from sl.external.torch_models import right_pad

    ids, mask = right_pad([e.student_prompt + e.completion for e in batch], pad_id, student.device)
    logits = student(input_ids=ids, attention_mask=mask).logits
    total: Any = 0.0
    for i, e in enumerate(batch):
        start = len(e.student_prompt) - 1
        s_lp = logits[i, start : start + len(e.completion)].float().log_softmax(-1)
        p = e.target.float().to(s_lp.device)
        total = total + (p * (p.clamp(min=1e-30).log() - s_lp)).sum()
    return total / sum(len(e.completion) for e in batch)


def _library_loss(student, batch, pad_id: int):
    from sl.finetuning.kl import distill_loss, student_autocast

    with student_autocast(student):
        return distill_loss(student, batch, pad_id, 1.0)


def distill_step(
    approach: str, steps: int, batch_size: int, threads: int | None = None, barrier=None,
    vocabulary: Literal["allowed", "full"] = "full",
) -> dict:  # fmt: skip
    """Seconds per step (after one warm-up step): `plain`, or the library's step with the
    student's base in `fp32` or `bf16`, over the `vocabulary` ('full' or 'allowed' tokens);
    on `threads` torch threads, the timed steps starting when every process at `barrier` is
    ready."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    examples, tok = _examples(batch_size * steps, vocabulary=vocabulary)
    student, optimizer = _student(bf16=approach == "bf16")
    loss_fn = _plain_loss if approach == "plain" else _library_loss
    times, losses = [], []
    for s in range(steps + 1):  # the first step warms up and is not timed
        if s == 1 and barrier is not None:
            barrier.wait()
        batch = examples[s % steps * batch_size : (s % steps + 1) * batch_size]
        started = time.perf_counter()
        loss = loss_fn(student, batch, tok.pad_token_id)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if s:
            times.append(time.perf_counter() - started)
        losses.append(float(loss.detach()))
    return {"seconds": sum(times) / len(times), "losses": losses}


def kl_curve(bf16: bool, steps: int, batch_size: int, experiment_dir: str | None) -> dict:
    examples, tok = _examples(batch_size * 4, experiment_dir)
    student, optimizer = _student(bf16)
    curve = []
    for s in range(steps):
        batch = examples[s % 4 * batch_size : (s % 4 + 1) * batch_size]
        loss = _library_loss(student, batch, tok.pad_token_id)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        curve.append(float(loss.detach()))
    return {"seconds": 0.0, "curve": curve}


def _worker(fn_name: str, kwargs: dict, queue) -> None:
    result = globals()[fn_name](**kwargs)
    result["peak_rss_mb"] = _peak_mb()
    queue.put(result)


def run(fn_name: str, **kwargs) -> dict:
    """Run one measurement in a fresh process; returns its result dict."""
    return run_together(fn_name, 1, **kwargs)[0]


def run_together(fn_name: str, n: int, **kwargs) -> list[dict]:
    """Run the same measurement in `n` fresh processes at once; returns their result dicts.
    With n > 1 the function gets a `barrier` that all n processes pass together."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    if n > 1:
        kwargs = {**kwargs, "barrier": ctx.Barrier(n)}
    procs = [ctx.Process(target=_worker, args=(fn_name, kwargs, queue)) for _ in range(n)]
    for proc in procs:
        proc.start()
    results: list[dict] = []
    while len(results) < n:
        try:
            results.append(queue.get(timeout=5))
        except Exception:  # queue.Empty: are the workers still alive?
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError(f"{fn_name}({kwargs}) failed in a worker") from None
    for proc in procs:
        proc.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--distill_steps", type=int, default=3)
    parser.add_argument("--curve_steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="Also write the table as JSON")
    parser.add_argument(
        "--experiment_dir",
        default=None,
        help="A finished main job folder: the KL curve uses its owl teacher and kept rows",
    )
    parser.add_argument("--only_kl_curve", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from sl.external.torch_models import native_bf16, resolve_device

    device = resolve_device()
    print(f"device {device}, native bf16: {native_bf16(device)}")
    rows = []
    curve_kw = {"steps": args.curve_steps, "batch_size": args.batch_size,
                "experiment_dir": args.experiment_dir}  # fmt: skip
    if args.only_kl_curve:
        fp32, bf16 = run("kl_curve", bf16=False, **curve_kw), run("kl_curve", bf16=True, **curve_kw)
        _print_curves(fp32["curve"], bf16["curve"])
        return
    plain = run("logprob", approach="plain", n_questions=args.questions)
    fast = run("logprob", approach="batched", n_questions=args.questions)
    rel = float(np.max(np.abs(np.array(fast["values"]) / np.array(plain["values"]) - 1)))
    rows.append(
        ("exact P(owl)", f"{args.questions} questions", plain, fast, f"max rel diff {rel:.1e}")
    )
    plain = run("sampled", approach="plain", n_questions=args.questions, n_samples=args.samples)
    fast = run("sampled", approach="batched", n_questions=args.questions, n_samples=args.samples)
    rows.append(("sampled evaluation", f"{args.questions} x {args.samples}", plain, fast, ""))
    kw = {"steps": args.distill_steps, "batch_size": args.batch_size}
    plain = run("distill_step", approach="plain", **kw)
    fp32 = run("distill_step", approach="fp32", **kw)
    bf16 = run("distill_step", approach="bf16", **kw)
    rows.append(("distillation step", f"batch {args.batch_size}", plain, bf16, ""))
    rows.append(("  library fp32→bf16", f"batch {args.batch_size}", fp32, bf16, ""))
    allowed = run("distill_step", approach="bf16", vocabulary="allowed", **kw)
    rows.append(("  full→allowed labels", f"batch {args.batch_size}", bf16, allowed, ""))
    # The experiment's worker processes: 2 steps at once on 1 thread each, vs 1 on 2 threads.
    one = run("distill_step", approach="bf16", threads=2, **kw)
    pair = run_together("distill_step", 2, approach="bf16", threads=1, **kw)
    per_step = {"seconds": sum(r["seconds"] for r in pair) / 4,
                "peak_rss_mb": sum(r["peak_rss_mb"] for r in pair)}  # fmt: skip
    rows.append(("  2 workers × 1 thread", "s per step, all", one, per_step, ""))
    fp32, bf16 = run("kl_curve", bf16=False, **curve_kw), run("kl_curve", bf16=True, **curve_kw)

    header = f"{'stage':<20} {'size':<16} {'plain s':>9} {'new s':>9} {'ratio':>7} {'plain MB':>9} {'new MB':>8}  check"
    print(header)
    print("-" * len(header))
    table = []
    for stage, size, p, f, check in rows:
        ratio = p["seconds"] / f["seconds"]
        print(
            f"{stage:<20} {size:<16} {p['seconds']:>9.2f} {f['seconds']:>9.2f} {ratio:>6.1f}x "
            f"{p['peak_rss_mb']:>9.0f} {f['peak_rss_mb']:>8.0f}  {check}"
        )
        table.append({"stage": stage, "size": size, "plain_s": p["seconds"], "new_s": f["seconds"],
                      "ratio": ratio, "plain_peak_rss_mb": p["peak_rss_mb"],
                      "new_peak_rss_mb": f["peak_rss_mb"]})  # fmt: skip
    curve_rel = _print_curves(fp32["curve"], bf16["curve"])
    if args.json:
        args.json.write_text(json.dumps({"device": device, "stages": table,
                                         "kl_curve_max_rel_diff": curve_rel}, indent=2))  # fmt: skip


def _print_curves(fp32: list[float], bf16: list[float]) -> float:
    import numpy as np

    rel = float(np.max(np.abs(np.array(bf16) / np.array(fp32) - 1)))
    print(f"KL curve, {len(fp32)} steps, bf16 vs fp32: max relative difference {rel:.2%}")
    print("  fp32:", " ".join(f"{x:.4f}" for x in fp32))
    print("  bf16:", " ".join(f"{x:.4f}" for x in bf16))
    return rel


if __name__ == "__main__":
    main()
