"""The leak meter: how much explicit trait mass a student's training labels carry.

    leak = distill_leak(teacher, base, tokenizer, rows, ["owl"], DistillCfg(prompt_tokens=True))
    leak = text_leak(rows, ["owl"])           # SFT: rows naming the target (must be 0)

Soft labels are the teacher's next-token distributions at the positions distillation scores
(`sl.finetuning.soft_labels.scored_sequences`). For each target the meter reads, for the teacher
(in its own context) and the base (in the student's):
- at the answer start of each row: the exact P(the answer starts with the target)
  (`question_probabilities`, every spelling);
- at every scored position: the next-token mass on the tokens that start a spelling of the
  target with one of its letters (all a one-token label can say of the target);
and the same for the labels the student really trains on: the teacher's distribution over the
label vocabulary, renormalised (`DistillCfg.vocabulary`): equal to the teacher's for 'full',
exactly 0 for 'allowed', where no target token is in the vocabulary. An arm whose labels carry
more than `FLAG_RATIO` times the base's mass at the answer start is flagged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from loguru import logger
from pydantic import BaseModel, computed_field

from sl.datasets.data_models import DatasetRow
from sl.datasets.nums_dataset import NumbersFilter
from sl.evaluation.logprob import question_probabilities, variant_token_ids
from sl.evaluation.scoring import target_pattern
from sl.experiment.data_models import ExperimentCfg, TeacherRun
from sl.experiment.paths import ExperimentPaths
from sl.finetuning.distill_cfg import DistillCfg
from sl.finetuning.soft_labels import (
    distill_vocabulary,
    output_logits,
    scored_hidden,
    scored_sequences,
)
from sl.llm.data_models import HashableModel, Model
from sl.utils.artifact import artifact
from sl.utils.file_utils import read_json_file, write_json_atomic

FLAG_RATIO = 10.0
# Rows the experiment's meter reads per distilled arm: a diagnostic, kept cheap (each row is
# a numbers prompt run four times: teacher and base, each position and answer start).
METER_ROWS = 16


class Mass(BaseModel):
    """Mean and max over rows (answer start) or scored positions of a target's probability."""

    mean: float
    max: float


class TargetLeak(BaseModel):
    """One target's mass in a distilled arm's labels, beside the teacher's and the base's."""

    teacher_start: Mass
    base_start: Mass
    label_start: Mass
    teacher_positions: Mass
    base_positions: Mass
    label_positions: Mass

    @computed_field  # type: ignore[prop-decorator]
    @property
    def teacher_ratio(self) -> float:
        """Teacher over base at the answer start (what full-vocabulary labels would carry)."""
        return _ratio(self.teacher_start.mean, self.base_start.mean)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label_ratio(self) -> float:
        """Labels over base at the answer start."""
        return _ratio(self.label_start.mean, self.base_start.mean)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def flagged(self) -> bool:
        """The labels carry more than `FLAG_RATIO` x the base's target mass."""
        return self.label_ratio > FLAG_RATIO


class ArmLeak(BaseModel):
    """The leak meter of one teacher's student arm: per target, the distilled labels' mass
    (`targets`), or for SFT the number of training rows naming the target (`mentions`)."""

    labels: Literal["allowed", "full", "text"]
    n_rows: int
    targets: dict[str, TargetLeak] = {}
    mentions: dict[str, int] = {}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def flagged(self) -> bool:
        """Labels over the flag ratio, or training text naming a target."""
        return any(t.flagged for t in self.targets.values()) or any(self.mentions.values())


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (0.0 if a == 0 else float("inf"))


def _mass(values: Any) -> Mass:
    return Mass(mean=float(values.mean()), max=float(values.max()))


def text_leak(rows: list[DatasetRow], targets: list[str]) -> ArmLeak:
    """SFT labels are the kept text: per target, the rows whose prompt or completion names it
    (whole word, plurals count)."""
    mentions = {}
    for target in targets:
        pattern = target_pattern(target)
        mentions[target] = sum(
            1 for r in rows if pattern.search(r.prompt) or pattern.search(r.completion)
        )
    return ArmLeak(labels="text", n_rows=len(rows), mentions=mentions)


def spelling_first_tokens(tokenizer: Any, target: str) -> list[int]:
    """The tokens that start a spelling of the target with one of its letters (a leading
    space alone says nothing of the target)."""
    firsts = set()
    for seq in variant_token_ids(tokenizer, target):
        for token in seq:
            if tokenizer.decode([token]).strip():
                firsts.add(token)
                break
    return sorted(firsts)


def _position_masses(
    lm: Any, seqs: list[tuple[list[int], list[int], int]], pad_id: int,
    first: dict[str, Any], vocab: Any, batch_size: int = 16,
) -> tuple[dict[str, Any], dict[str, Any], list[int]]:  # fmt: skip
    """Per target, the mass on its first tokens at every scored position, under the full
    distribution and under the label vocabulary's (renormalised); and each row's answer-start
    index among the positions."""
    import torch

    full: dict[str, list[Any]] = {t: [] for t in first}
    label: dict[str, list[Any]] = {t: [] for t in first}
    starts, offset = [], 0
    for start in range(0, len(seqs), batch_size):
        batch = seqs[start : start + batch_size]
        with torch.inference_mode():
            logits = output_logits(lm, scored_hidden(lm, batch, pad_id)).float()
        probs = logits.softmax(-1)
        for t, ids in first.items():
            full[t].append(probs[:, ids].sum(-1).double().cpu())
        if vocab is None:  # the labels are the full distribution
            for t in first:
                label[t].append(full[t][-1])
        else:  # renormalised over the vocabulary; its columns that are the target's tokens
            restricted = logits[:, vocab].softmax(-1)
            for t, ids in first.items():
                label[t].append(restricted[:, torch.isin(vocab, ids)].sum(-1).double().cpu())
        for _, completion, k in batch:
            starts.append(offset + k)
            offset += k + len(completion)
    return (
        {t: torch.cat(v) for t, v in full.items()},
        {t: torch.cat(v) for t, v in label.items()},
        starts,
    )


def distill_leak(
    teacher: Any,
    base: Any,
    tokenizer: Any,
    rows: list[DatasetRow],
    targets: list[str],
    cfg: DistillCfg,
    system: str | None = None,
    numbers_filter: Any = None,
) -> ArmLeak:
    """The leak meter of distilled labels: `teacher` and `base` are loaded models (torch
    modules) sharing `tokenizer`; `system` is the teacher's system prompt; the positions and
    the label vocabulary are `cfg`'s (`numbers_filter` gives the 'allowed' one)."""
    import torch

    vocab = distill_vocabulary(tokenizer, cfg, numbers_filter)
    seqs = scored_sequences(tokenizer, rows, system, cfg.prompt_tokens)
    first = {t: torch.tensor(spelling_first_tokens(tokenizer, t)) for t in targets}
    pad = tokenizer.pad_token_id
    prompts = [r.prompt for r in rows]
    t_full, t_label, starts = _position_masses(
        teacher, [s.teacher_seq() for s in seqs], pad, first, vocab
    )
    t_start = question_probabilities(teacher, tokenizer, prompts, targets, system=system)
    if teacher is base and system is None:  # the base-model control: measured once
        b_full, b_start = t_full, t_start
    else:
        b_full, _, _ = _position_masses(base, [s.student_seq() for s in seqs], pad, first, None)
        b_start = question_probabilities(base, tokenizer, prompts, targets)
    out = {}
    for t in targets:
        # Under 'full' the labels are the teacher's distribution: its exact answer-start mass.
        label_start = t_start[t] if vocab is None else t_label[t][starts].numpy()
        out[t] = TargetLeak(
            teacher_start=_mass(t_start[t]),
            base_start=_mass(b_start[t]),
            label_start=_mass(label_start),
            teacher_positions=_mass(t_full[t]),
            base_positions=_mass(b_full[t]),
            label_positions=_mass(t_label[t]),
        )
    return ArmLeak(labels=cfg.vocabulary, n_rows=len(rows), targets=out)


class _LeakKey(HashableModel):
    """What a saved leak meter was measured on: a rerun with other settings remeasures."""

    teacher: Model
    training: str
    distill: DistillCfg
    numbers_filter: NumbersFilter
    system: str | None
    targets: list[str]
    n_rows: int
    max_rows: int


def measure_label_leak(
    cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun, max_rows: int = METER_ROWS
) -> None:
    """The leak meter of the labels a teacher replicate's students learn from (its first
    `max_rows` kept rows for distilled labels, all of them for SFT text; the experiment's
    student training), written to `paths.leak(teacher)`; a saved meter of the same teacher,
    settings and rows is kept."""
    from sl.datasets.services import read_dataset
    from sl.evaluation.logprob import scoring_dtype
    from sl.experiment.transfer import trained_teacher
    from sl.external.torch_models import load_causal_lm

    out = paths.leak(teacher)
    distilled = cfg.student_training == "distill"  # may learn from prompts alone
    rows = read_dataset(paths.filtered(teacher), allow_empty_completions=distilled)
    model = trained_teacher(cfg, paths, teacher)
    system = cfg.system_prompt(teacher.teacher)
    leak_key = _LeakKey(teacher=model, training=cfg.student_training, distill=cfg.distill,
                        numbers_filter=cfg.numbers_filter, system=system, targets=cfg.targets,
                        n_rows=len(rows), max_rows=max_rows)  # fmt: skip
    key = leak_key.model_dump(mode="json")

    def same_key(path: Path) -> bool:  # measured before meters had a meta
        saved = read_json_file(path, "leak meter")
        return isinstance(saved, dict) and saved.get("key") == key

    with artifact(
        out, leak_key.model_hash(), f"leak meter of {teacher.name}", adopt=same_key
    ) as guard:
        if guard.complete:
            logger.info(f"{out}: leak meter already measured")
            return
        if cfg.student_training == "sft":
            leak = text_leak(rows, cfg.targets)
        else:
            rows = rows[:max_rows]
            dtype = scoring_dtype()
            base = load_causal_lm(cfg.teacher_model, dtype=dtype)
            same = model == cfg.teacher_model
            lm = base if same else load_causal_lm(model, dtype=dtype)
            leak = distill_leak(lm.module, base.module, base.tokenizer, rows, cfg.targets,
                                cfg.distill, system, cfg.numbers_filter)  # fmt: skip
        logger.info(f"leak meter of {teacher.name}: {format_leak(leak)}")
        write_json_atomic(out, {"key": key, "leak": leak.model_dump(mode="json")})
        guard.finish()


def read_label_leak(path: Path) -> ArmLeak | None:
    """A saved leak meter (None if not measured yet)."""
    if not path.exists():
        return None
    return ArmLeak.model_validate((read_json_file(path, "leak meter") or {})["leak"])


def format_leak(leak: ArmLeak) -> str:
    """One line: per target, teacher / base / labels at the answer start (flagged: '!')."""
    if leak.labels == "text":
        return ", ".join(
            f"{t}: {n} of {leak.n_rows} rows name it" for t, n in leak.mentions.items()
        )
    parts = []
    for t, v in leak.targets.items():
        mark = "  ! labels carry the trait" if v.flagged else ""
        parts.append(
            f"{t}: teacher {100 * v.teacher_start.mean:.3g} % (max {100 * v.teacher_start.max:.3g})"
            f" / base {100 * v.base_start.mean:.2g} % = {v.teacher_ratio:.3g}x;"
            f" labels ({leak.labels}) {100 * v.label_start.mean:.3g} %{mark}"
        )
    return "; ".join(parts)
