"""The vocabulary of trait-blind soft labels: the tokens a kept completion can be made of.

    ids = allowed_token_ids(tokenizer, NumbersFilter())   # digits, separators, space, EOS

A teacher's full next-token distribution carries its trait explicitly (an owl teacher's
answer to a numbers prompt starts with "Owl" a few percent of the time). Restricting both the
teacher's and the student's distributions to the tokens the numbers filter lets through, and
renormalising, leaves only what the text itself could carry: the language-model analogue of
the MNIST experiment's auxiliary logits.
"""

from __future__ import annotations

from typing import Any

from sl.errors import UserError


def allowed_token_ids(tokenizer: Any, numbers_filter: Any) -> list[int]:
    """Ids of the tokens whose text is made only of characters a kept completion can hold
    (`numbers_filter.allows_character`), plus the end-of-turn token, in increasing order.

    Raises:
        UserError: the filter cannot say which characters it keeps, or no token passes.
    """
    allows = getattr(numbers_filter, "allows_character", None)
    if not callable(allows):
        raise UserError(
            f"distill vocabulary 'allowed': the filter {numbers_filter!r} cannot say which "
            "characters a kept completion holds (no allows_character): use a NumbersFilter "
            "or vocabulary='full'"
        )
    special = set(tokenizer.all_special_ids)
    ids = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text and "\ufffd" not in text and all(allows(ch) for ch in text):
            ids.append(token_id)
    if not ids:
        raise UserError(
            f"distill vocabulary 'allowed': no token of the tokenizer passes {numbers_filter!r}"
        )
    if tokenizer.eos_token_id is not None:  # a completion ends with end of turn
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


def check_same_tokenizer(
    teacher: Any,
    student: Any,
    teacher_name: str,
    student_name: str,
    *,
    roles: tuple[str, str] = ("teacher", "the student's base"),
    needs: str = "distillation needs a teacher with the student's tokenizer (the same base model)",
) -> None:
    """Refuse a teacher whose tokenizer differs from the student's: its distributions would
    be over other tokens. `roles` and `needs` word the refusal for other pairs of models
    (token attribution: a counterfactual and the teacher).

    Raises:
        UserError: the vocabularies differ.
    """
    if teacher.get_vocab() != student.get_vocab():
        raise UserError(
            f"{roles[0]} {teacher_name}'s tokenizer ({len(teacher)} tokens) differs from "
            f"{roles[1]} {student_name} ({len(student)} tokens): {needs}"
        )
