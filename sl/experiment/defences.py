"""The data of the defence arms: each target teacher's token attribution and, per defence,
the tokens its students do not learn from (a `LossMask` file) or the rows they learn from
instead (divergent tokens replaced).

    masks = divergent_masks(attributions)                 # mask_divergent
    masks = random_masks(attributions, seed)              # mask_random: same count per row
    masks = top_score_masks(attributions, n)              # mask_top_score: top n teacher − base
    rows = replaced_rows(rows, attributions, tokenizer)   # replace_divergent

The attribution's counterfactuals are the experiment's other teachers, the control first,
so `counterfactual_argmax[0]` is the control teacher's choice.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from loguru import logger

from sl.attribution.data_models import ModelContext, TokenAttribution
from sl.datasets.data_models import DatasetRow
from sl.datasets.services import read_dataset, save_dataset
from sl.errors import UserError
from sl.experiment import transfer
from sl.experiment.arms import StudentArm
from sl.experiment.data_models import ExperimentCfg, TeacherRun
from sl.experiment.paths import ExperimentPaths
from sl.finetuning.loss_mask import LossMask, MaskedRow
from sl.llm.data_models import Model
from sl.utils.artifact import artifact, content_digest
from sl.utils.file_utils import read_jsonl, write_jsonl_atomic
from sl.utils.fingerprint import json_hash
from sl.utils.seeds import stable_seed

Masks = list[list[bool]]


def divergent_masks(attributions: list[TokenAttribution]) -> Masks:
    """The divergent tokens of every row (where a counterfactual's argmax differs)."""
    return [list(a.divergent) for a in attributions]


def random_masks(attributions: list[TokenAttribution], seed: int) -> Masks:
    """As many tokens per row as `divergent_masks` masks, at random positions of the row
    (seeded per row): the budget-matched control for masking."""
    out = []
    for a in attributions:
        n, k = len(a.divergent), sum(a.divergent)
        chosen = set(random.Random(stable_seed(seed, a.row)).sample(range(n), k))
        out.append([j in chosen for j in range(n)])
    return out


def top_score_masks(attributions: list[TokenAttribution], n: int) -> Masks:
    """The `n` tokens of highest teacher − base log-prob over all rows (ties: the earlier
    row and position), which needs no counterfactual teacher."""
    ranked = sorted(
        ((-s, a.row, j) for a in attributions for j, s in enumerate(a.score)),
    )
    chosen = {(row, j) for _, row, j in ranked[:n]}
    return [[(a.row, j) in chosen for j in range(len(a.score))] for a in attributions]


def replaced_rows(
    rows: list[DatasetRow], attributions: list[TokenAttribution], tokenizer: Any
) -> tuple[list[DatasetRow], int]:
    """The rows with each divergent token replaced by the control teacher's argmax (the rest
    unchanged), decoded to text; and how many replacements were special tokens (e.g. the end
    of turn: decoding drops them)."""
    out, special = [], 0
    ids_special = set(tokenizer.all_special_ids)
    for row, a in zip(rows, attributions, strict=True):
        ids = [
            a.counterfactual_argmax[0][j] if a.divergent[j] else t
            for j, t in enumerate(a.token_ids)
        ]
        special += sum(1 for j, t in enumerate(ids) if a.divergent[j] and t in ids_special)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        out.append(DatasetRow(prompt=row.prompt, completion=text))
    return out, special


def arm_masks(arm: StudentArm, attributions: list[TokenAttribution]) -> Masks:
    """The masks of a masking defence."""
    if arm.defence == "mask_divergent":
        return divergent_masks(attributions)
    if arm.defence == "mask_random":
        return random_masks(attributions, stable_seed(arm.name))
    if arm.defence == "mask_top_score":
        total = sum(len(a.score) for a in attributions)
        n = (
            round(arm.fraction * total)
            if arm.fraction is not None
            else sum(sum(a.divergent) for a in attributions)
        )
        return top_score_masks(attributions, n)
    raise ValueError(f"{arm.defence} is not a masking defence")


def counterfactual_contexts(cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun):
    """The other teachers of the experiment (the control first), each the replicate of the
    same index where it has one, in its own context."""
    out = []
    for other in cfg.teachers:
        if other == teacher.teacher:
            continue
        replicates = cfg.teacher_replicates(other)
        run = replicates[min(teacher.replicate, len(replicates) - 1)]
        model = transfer.trained_teacher(cfg, paths, run)
        out.append(ModelContext(model=model, system_prompt=cfg.system_prompt(other)))
    return out


def attribute_teacher(cfg: ExperimentCfg, paths: ExperimentPaths, teacher: TeacherRun) -> None:
    """Token attribution of a target teacher replicate's kept rows (the 'arms' stage), then
    every defence arm's masks or replaced rows of those rows."""
    from sl.attribution.services import TOKENS, run_token_attribution

    model = transfer.trained_teacher(cfg, paths, teacher)
    context = ModelContext(model=model, system_prompt=cfg.system_prompt(teacher.teacher))
    folder = paths.attribution(teacher)
    run_token_attribution(
        paths.filtered(teacher),
        context,
        cfg.teacher_model,
        counterfactual_contexts(cfg, paths, teacher),
        folder,
    )
    attributions = read_jsonl(folder / TOKENS, TokenAttribution)
    digest = content_digest(folder / TOKENS)["sha256"]
    rows = read_dataset(paths.filtered(teacher))
    for arm in cfg.arms:
        if not arm.attributed or teacher.teacher not in cfg.arm_teachers(arm):
            continue
        # a defence's output is owned by the arm's settings and the attribution it read
        key = json_hash({"arm": arm.model_dump(mode="json"), "attribution": digest})
        if arm.defence == "replace_divergent":
            _write_replaced(paths, arm, teacher, key, rows, attributions, model)
        else:
            _write_masks(paths, arm, teacher, key, rows, attributions)


def _write_masks(
    paths: ExperimentPaths,
    arm: StudentArm,
    teacher: TeacherRun,
    key: str,
    rows: list[DatasetRow],
    attributions: list[TokenAttribution],
) -> None:
    path = paths.mask(arm.name, teacher)
    with artifact(path, key, f"{arm.name} mask of {teacher.name}", kind="loss mask") as out:
        if out.complete:
            return
        masks = arm_masks(arm, attributions)
        write_jsonl_atomic(path, [
            MaskedRow(prompt=r.prompt, completion=r.completion, masked=m)
            for r, m in zip(rows, masks, strict=True)
        ])  # fmt: skip
        n_masked, n_tokens = sum(map(sum, masks)), sum(map(len, masks))
        logger.info(f"{arm.name}: {n_masked} of {n_tokens} completion tokens of "
                    f"{teacher.name} masked")  # fmt: skip
        out.finish(rows=len(rows), masked=n_masked, tokens=n_tokens)


def _write_replaced(
    paths: ExperimentPaths,
    arm: StudentArm,
    teacher: TeacherRun,
    key: str,
    rows: list[DatasetRow],
    attributions: list[TokenAttribution],
    model: Model,
) -> None:
    from sl.attribution.models import check_same_tokenizers

    path = paths.defended(arm.name, teacher)
    with artifact(path, key, f"{arm.name} rows of {teacher.name}", kind="defended rows") as out:
        if out.complete:
            return
        tokenizer = check_same_tokenizers(model, [])
        replaced, special = replaced_rows(rows, attributions, tokenizer)
        save_dataset(replaced, path)
        n = sum(sum(a.divergent) for a in attributions)
        logger.info(f"{arm.name}: {n} divergent tokens of {teacher.name} replaced by the "
                    f"control's choice ({special} special, dropped)")  # fmt: skip
        out.finish(rows=len(replaced), replaced=n, special=special)


def arm_data(
    cfg: ExperimentCfg, paths: ExperimentPaths, arm: StudentArm, teacher: TeacherRun
) -> tuple[Path, LossMask | None]:
    """The rows an arm's students of a teacher replicate learn from, and their loss mask.

    A defence acts on the target teachers only (the arm's control students, when it has
    them, learn from the control's rows as they are).

    Raises:
        UserError: the arms stage has not written the defence's files yet.
    """
    if teacher.arm is not None or arm.defence is None or teacher.teacher not in cfg.targets:
        return paths.filtered(teacher), None
    main = teacher.main
    if arm.defence == "replace_divergent":
        path, mask = paths.defended(arm.name, main), None
    else:
        path, mask = paths.filtered(main), paths.mask(arm.name, main)
    for needed in (path, mask):
        if needed is not None and not needed.exists():
            raise UserError(f"{needed} is missing: run the 'arms' stage first", path=needed)
    return path, LossMask.of(mask) if mask is not None else None
