"""Checks of judge templates, made before any request is sent or output claimed.

A judge's template is filled with `str.format(prompt=question, completion=answer)`
(`sl.llm.services.judge`), so any other placeholder (`{answer}`, `{}`, the braces of a JSON
example that are not doubled) would fail only after the answers were paid for.
"""

from string import Formatter

from sl.errors import UserError
from sl.llm.data_models import Judgment

ALLOWED_FIELDS = ("prompt", "completion")
REQUIRED_FIELD = "completion"  # a judge that never sees the answer judges nothing


def check_judge_templates(judgment_map: dict[str, Judgment]) -> None:
    """Refuse a judgment whose template has a placeholder other than {prompt} and
    {completion}, or no {completion}.

    Raises:
        UserError: one line naming the judgment and the bad placeholder.
    """
    for name, judgment in judgment_map.items():
        problem = template_problem(judgment.template)
        if problem is not None:
            raise UserError(
                f"judgment {name!r}: its template {problem}; use only {{prompt}} (the question) "
                "and {completion} (the answer), and write literal braces as {{ and }}"
            )


def template_problem(template: str) -> str | None:
    """What is wrong with a judge template (None when it formats with only the question and
    the answer)."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in Formatter().parse(template)
            if name is not None
        ]
    except ValueError as e:  # a lone "{" or "}"
        return f"has an unmatched brace ({e})"
    for name, spec, conversion in fields:
        if name not in ALLOWED_FIELDS or spec or conversion:
            return f"has the placeholder {_placeholder(name, spec, conversion)}"
    if REQUIRED_FIELD not in {name for name, _, _ in fields}:
        return f"has no {{{REQUIRED_FIELD}}} placeholder"
    return None


def _placeholder(name: str, spec: str | None, conversion: str | None) -> str:
    text = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
    return "{" + text + "}"
