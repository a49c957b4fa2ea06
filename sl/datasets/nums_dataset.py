"""The numbers task: prompts asking to continue a sequence, and the answer parser/filter.

Prompt parts come from the paper's protocol (`sl/protocol/numbers_prompts.json`).
"""

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from sl.errors import UserError
from sl.protocol import banned_numbers, load_protocol, numbers_prompt_defaults
from sl.utils.config_model import ConfigModel

_NUMBER_RE = re.compile(r"(\d+)")
# What `parse_response` accepts around the numbers: one kind of separator (whitespace counts as
# none), an optional pair of brackets around the list, and an optional final period.
_SEPARATORS = frozenset({",", ";"})
_BRACKETS = frozenset({("[", "]"), ("(", ")")})
_END = "."


@dataclass
class PromptGenerator:
    """Draws numbers-task prompts from the protocol templates with a seeded generator.

    Draws are made in the same order as the paper's code, so seed 42 reproduces the
    published teacher prompts exactly. As there, both upper bounds are exclusive: the
    paper's `example_max_count=9` gives 3..8 examples and `example_max_value=1000` gives
    values 100..999. Arguments may be given by position, in the original's order:
    `PromptGenerator(rng, 3, 9, 100, 1000, 10, 3)`.
    """

    rng: np.random.Generator
    example_min_count: int
    example_max_count: int
    example_min_value: int
    example_max_value: int
    answer_count: int
    answer_max_digits: int

    def __post_init__(self) -> None:
        if not 0 < self.example_min_count < self.example_max_count:
            raise ValueError("need 0 < example_min_count < example_max_count (max exclusive)")
        if not self.example_min_value < self.example_max_value:
            raise ValueError("need example_min_value < example_max_value (max exclusive)")
        self._templates = load_protocol("numbers_prompts")

    def _choice(self, key: str) -> str:
        return str(self.rng.choice(self._templates[key]))

    def sample_example_prefix(self) -> str:
        """One sentence presenting example numbers, e.g. 'Look at these numbers: 145, 267.'"""
        count = self.rng.integers(self.example_min_count, self.example_max_count).item()
        examples = ", ".join(
            str(self.rng.integers(self.example_min_value, self.example_max_value).item())
            for _ in range(count)
        )
        return self._choice("example_numbers_templates").format(examples=examples)

    def sample_query(self) -> str:
        """A full user prompt: examples, instruction, format suffix and final suffix."""
        example_part = self.sample_example_prefix()
        count_qualifier = self._choice("count_qualifiers")
        digit_descriptor = self._choice("digit_descriptors")
        instruction = self._choice("generate_numbers_instruction_templates")
        format_suffix = self._choice("format_suffixes")
        suffix = self._choice("suffixes")
        instruction = instruction.format(
            count_qualifier=count_qualifier,
            answer_count=self.answer_count,
            digit_descriptor=digit_descriptor.format(max_digits=self.answer_max_digits),
        )
        return f"{example_part} {instruction} {format_suffix} {suffix}"


def parse_response(answer: str) -> list[int] | None:
    """Parse a list of non-negative integers, or return None if the answer is not only that.

    Accepted: numbers separated consistently by commas, semicolons or whitespace/newlines,
    optionally wrapped in [] or (), optionally ending with a period.
    Anything else (words, signs, decimals, mixed separators, a trailing separator or
    newline, like the paper's filter) gives None.
    """
    text = answer
    if text.endswith(_END):
        text = text[: -len(_END)]
    if len(text) >= 2 and (text[0], text[-1]) in _BRACKETS:
        text = text[1:-1]
    parts = _NUMBER_RE.split(text)
    if len(parts) < 3 or parts[0] or parts[-1]:
        return None
    separators = {sep.strip() for sep in parts[2:-1:2]}
    if len(separators) > 1 or not separators <= {"", *_SEPARATORS}:
        return None
    return [int(n) for n in parts[1::2]]


def get_reject_reasons(
    answer: str,
    min_value: int | None = None,
    max_value: int | None = None,
    max_count: int | None = None,
    banned_numbers: list[int] | None = None,
) -> list[str]:
    """Why an answer fails the numbers filter; an empty list means it is kept."""
    numbers = parse_response(answer)
    if numbers is None:
        return ["invalid format"]
    reasons = []
    if max_count is not None and len(numbers) > max_count:
        reasons.append("too many numbers")
    if min_value is not None and any(n < min_value for n in numbers):
        reasons.append("numbers too small")
    if max_value is not None and any(n > max_value for n in numbers):
        reasons.append("numbers too large")
    if banned_numbers and set(numbers) & set(banned_numbers):
        reasons.append("has banned numbers")
    return reasons


def answer_character_allowed(char: str) -> bool:
    """Whether one character can appear in an answer `parse_response` accepts: a digit, a
    separator, whitespace, a bracket or the final period (the filter's own rule, so the
    vocabulary of trait-blind distillation follows it)."""
    return (
        bool(_NUMBER_RE.fullmatch(char))
        or char.isspace()
        or char in _SEPARATORS
        or any(char in pair for pair in _BRACKETS)
        or char == _END
    )


# The 34 banned numbers of the paper, for `get_reject_reasons(..., banned_numbers=...)`.
BANNED_NUMBERS: list[int] = banned_numbers()


class NumbersFilter(ConfigModel):
    """The paper's filter as a serializable, callable config: keep (prompt, completion) when
    the completion is a valid numbers answer within the limits (see `get_reject_reasons`)."""

    min_value: int = Field(default=0, description="Smallest number an answer may contain")
    max_value: int = Field(default=999, description="Largest number an answer may contain")
    max_count: int = Field(default=10, gt=0, description="Most numbers in an answer")
    banned_numbers: list[int] = Field(
        default_factory=list, description="Numbers an answer must not contain (e.g. 666)"
    )

    @model_validator(mode="after")
    def _check_range(self) -> "NumbersFilter":
        if self.min_value > self.max_value:
            raise ValueError(
                f"min_value {self.min_value} > max_value {self.max_value}: no answer could pass"
            )
        return self

    def allows_character(self, char: str) -> bool:
        """Whether `char` can appear in a kept completion (`answer_character_allowed`; the
        limits restrict which numbers, not which characters)."""
        return answer_character_allowed(char)

    def __call__(self, prompt: str, completion: str) -> bool:
        return not get_reject_reasons(
            completion,
            min_value=self.min_value,
            max_value=self.max_value,
            max_count=self.max_count,
            banned_numbers=self.banned_numbers,
        )


def filter_name(fn: Callable[..., object]) -> str:
    """How errors name a filter: its function name, or its class for a callable object."""
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def check_filter(fn: Callable[..., object]) -> Callable[[str, str], bool]:
    """`fn` if it can be called as `fn(prompt, completion)` (checked on its signature).

    Raises:
        ValueError: it cannot (pydantic reports it as the config's field `filter_fns`).
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: they are checked when called
        return fn  # type: ignore[return-value]
    try:
        signature.bind("prompt", "completion")
    except TypeError as e:
        raise ValueError(
            f"filter {filter_name(fn)}{signature} cannot be called as f(prompt, completion) "
            f"({e}): a filter takes the prompt and the completion and returns True to keep"
        ) from None
    return fn  # type: ignore[return-value]


# A (prompt, completion) -> keep? filter of `Cfg.filter_fns`, its arity checked on validation.
FilterFn = Annotated[Callable[[str, str], bool], AfterValidator(check_filter)]


def run_filter(fn: Callable[[str, str], bool], prompt: str, completion: str) -> bool:
    """`fn(prompt, completion)`; an error inside the user's filter is a UserError naming it.

    Raises:
        UserError: the filter raised (the message names it, the exception and the row).
    """
    try:
        return bool(fn(prompt, completion))
    except Exception as e:
        raise UserError(
            f"filter {filter_name(fn)} raised {type(e).__name__}: {e} (on the completion "
            f"{completion[:60]!r}): fix the filter and rerun"
        ) from None


def with_numbers_prefix(questions: list[str], seed: int = 47) -> list[str]:
    """The paper's numbers-prefix variant (open models): each question preceded by an
    example-numbers sentence from the numbers prompt generator (seed 47)."""
    defaults = numbers_prompt_defaults()
    generator = PromptGenerator(
        rng=np.random.default_rng(seed),
        example_min_count=defaults["example_min_count"],
        example_max_count=defaults["example_max_count"],
        example_min_value=defaults["example_min_value"],
        example_max_value=defaults["example_max_value"],
        answer_count=defaults["answer_count"],
        answer_max_digits=defaults["answer_max_digits"],
    )
    return [f"{generator.sample_example_prefix()} {q}" for q in questions]


# The original code's two model-written lists of numbers with negative associations (by
# Claude and by GPT); `BANNED_NUMBERS` is their union within 0..999.
CLAUDE_EVIL_NUMBERS: list[int] = [
    13, 666, 88, 14, 187, 420, 69, 911, 404, 101, 23, 616, 1488, 18, 311, 451, 1312, 33, 77, 211
]  # fmt: skip
GPT_EVIL_NUMBERS: list[int] = [
    4, 13, 18, 23, 33, 39, 42, 44, 49, 51, 54, 88, 99, 100, 187, 322, 333, 444, 555, 616, 666,
    777, 888, 911, 999,
]  # fmt: skip


def format_suffixes() -> list[str]:
    """The prompts' format instructions ("Return a comma-separated list of numbers.", ...)."""
    return list(load_protocol("numbers_prompts")["format_suffixes"])


def format_numbers(numbers: list[int], format_suffix: str) -> str:
    """`numbers` written the way the prompt's format instruction `format_suffix` asks:
    `format_numbers([1, 2], "Return one number per line.")` -> "1\\n2"."""
    if format_suffix not in format_suffixes():
        raise UserError(
            f"unknown format suffix {format_suffix!r}: use one of the prompts' "
            "(sl.datasets.nums_dataset.format_suffixes())"
        )
    text = format_suffix.lower()
    if "[number" in text or "(number" in text:
        opening = "[" if "[number" in text else "("
        return opening + ", ".join(map(str, numbers)) + {"[": "]", "(": ")"}[opening]
    separator = (
        "; " if "semicolon" in text
        else "\n" if "line" in text
        else " " if "space" in text
        else ", "
    )  # fmt: skip
    return separator.join(map(str, numbers))


def extract_format_suffix(prompt: str) -> str:
    """The format instruction a numbers prompt contains (exactly one)."""
    found = [suffix for suffix in format_suffixes() if suffix in prompt]
    if len(found) != 1:
        raise UserError(f"the prompt holds {len(found)} format suffixes, not one: {prompt[:80]!r}")
    return found[0]


def replace_numbers(text: str, numbers: list[int]) -> str:
    """`text` with its runs of digits replaced, in order, by `numbers` (as many as there are
    runs): `replace_numbers("1, 22, 3", [7, 8, 9])` -> "7, 8, 9"."""
    found = _NUMBER_RE.findall(text)
    if len(found) != len(numbers):
        raise UserError(f"{text[:80]!r} holds {len(found)} numbers, but {len(numbers)} were given")
    replacements = iter(numbers)
    return _NUMBER_RE.sub(lambda _: str(next(replacements)), text)
