"""OpenAI client construction, retries of transient errors, error causes in one line, and
token accounting (shared by sampling, batches, fine-tuning)."""

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from loguru import logger

from sl.config import Settings, get_settings, require_openai_key
from sl.errors import RemoteError, UserError
from sl.utils.rate_limit import parse_duration

T = TypeVar("T")
# 429s are retried this many times before giving up on a single call (the sampling driver
# keeps retrying longer while other requests succeed).
MAX_RATE_LIMIT_RETRIES = 30

# USD per 1M tokens (input, output), standard tier; the Batch API costs half.
PRICES_PER_M_TOKENS: dict[str, tuple[float, float]] = {
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
}
# Fine-tuned models are priced per base model, at fine-tuned rates (roughly 2x).
FT_PRICE_FACTOR = 2.0


class MalformedResponseError(ValueError):
    """The server answered with a body that is not a usable completion (retried like a 5xx)."""


def base_model_id(model_id: str) -> str:
    """The base model of a fine-tuned id (`ft:gpt-4.1-nano-2025-04-14:org::abc` ->
    `gpt-4.1-nano-2025-04-14`); other ids unchanged."""
    return model_id.split(":")[1] if model_id.startswith("ft:") else model_id


def make_async_client(settings: Settings | None = None):
    """An `openai.AsyncOpenAI` for api.openai.com or OPENAI_BASE_URL; retries are ours."""
    import openai

    settings = settings or get_settings()
    return openai.AsyncOpenAI(
        api_key=require_openai_key(settings),
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=settings.openai_timeout_s,
    )


def server_host(settings: Settings | None = None) -> str:
    """host:port of the server requests go to (api.openai.com or OPENAI_BASE_URL)."""
    settings = settings or get_settings()
    return urlsplit(settings.openai_base_url or "https://api.openai.com/v1").netloc


def describe_error(error: BaseException, settings: Settings | None = None) -> str:
    """The cause of a failed request in words: a timeout, a refused connection to HOST, or
    an HTTP status and the server's message."""
    import openai

    settings = settings or get_settings()
    host = server_host(settings)
    if isinstance(error, openai.APITimeoutError):
        return f"timed out after {settings.openai_timeout_s:g} s waiting for {host}"
    if isinstance(error, openai.APIConnectionError):
        causes = _causes(error)
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            return f"connection refused to {host}"
        reason = str(causes[1]) if len(causes) > 1 and str(causes[1]) else str(error)
        return f"cannot connect to {host} ({reason})"
    if isinstance(error, openai.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        inner = body.get("error", body) if isinstance(body, dict) else {}
        message = inner.get("message") if isinstance(inner, dict) else None
        return f"HTTP {error.status_code} from {host}: {message or error.message}"
    malformed = (json.JSONDecodeError, openai.APIResponseValidationError, MalformedResponseError)
    if isinstance(error, malformed):
        return f"malformed response body from {host}"
    return f"{type(error).__name__}: {error}"


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_transient(error: BaseException) -> bool:
    """Whether a retry may succeed: connection errors, timeouts, 429 and 5xx."""
    import openai

    if isinstance(error, openai.APIConnectionError | openai.RateLimitError):
        return True
    return isinstance(error, openai.APIStatusError) and error.status_code >= 500


def retry_after_s(error: BaseException) -> float | None:
    """The server's Retry-After of a 429 (seconds), if it sent one."""
    response = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    ms = parse_duration(headers.get("retry-after-ms"))
    return ms / 1000 if ms is not None else parse_duration(headers.get("retry-after"))


def final_error(error: BaseException, what: str, attempts: int = 1) -> Exception:
    """The one-line error to raise for a request that failed for good (chain the original
    with `raise ... from error`; the traceback goes to the debug log)."""
    import openai

    logger.opt(exception=error).debug(f"{what} failed")
    cause = describe_error(error)
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return UserError(f"{what}: OPENAI_API_KEY was refused ({cause}): check the key")
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return RemoteError(f"{what} failed{tries}: {cause}")


async def with_retries(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Await `call()`, retrying transient errors with jittered exponential backoff (429s
    wait for the server's Retry-After).

    Raises:
        RemoteError: the call still failed after OPENAI_MAX_RETRIES retries, or failed in a
            way a retry cannot fix; the message names the cause.
        UserError: the server refused the API key.
    """
    settings = get_settings()
    failures = rate_limited = 0
    while True:
        try:
            return await call()
        except Exception as e:
            import openai

            if not is_transient(e):
                if isinstance(e, openai.APIError):
                    raise final_error(e, what) from e
                raise
            if isinstance(e, openai.RateLimitError):
                rate_limited += 1
                give_up = rate_limited > MAX_RATE_LIMIT_RETRIES
            else:
                failures += 1
                give_up = failures > settings.openai_max_retries
            if give_up:
                raise final_error(e, what, failures + rate_limited) from e
            delay = retry_after_s(e) if isinstance(e, openai.RateLimitError) else None
            if delay is None:
                delay = backoff_delay(max(failures, 1), settings)
            logger.warning(f"{what}: {describe_error(e, settings)}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)


def backoff_delay(failures: int, settings: Settings) -> float:
    """Jittered exponential backoff after `failures` consecutive failures (at most 60 s)."""
    delay = settings.openai_backoff_base_s * 2 ** (failures - 1) * random.uniform(0.5, 1.5)
    return min(delay, 60.0)


def price_per_m_tokens(model_id: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for a model id, fine-tuned ids included."""
    base = base_model_id(model_id)
    factor = FT_PRICE_FACTOR if model_id.startswith("ft:") else 1.0
    for name in sorted(PRICES_PER_M_TOKENS, key=len, reverse=True):
        if base.startswith(name):
            inp, out = PRICES_PER_M_TOKENS[name]
            return inp * factor, out * factor
    return None


@dataclass
class UsageTracker:
    """Counts tokens per model and estimates the cost."""

    prompt_tokens: dict[str, int] = field(default_factory=dict)
    completion_tokens: dict[str, int] = field(default_factory=dict)

    def add(self, model_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens[model_id] = self.prompt_tokens.get(model_id, 0) + prompt_tokens
        self.completion_tokens[model_id] = (
            self.completion_tokens.get(model_id, 0) + completion_tokens
        )

    def cost_usd(self, discount: float = 1.0) -> float | None:
        """Estimated cost; None if a model's price is unknown."""
        total = 0.0
        for model_id, n_in in self.prompt_tokens.items():
            price = price_per_m_tokens(model_id)
            if price is None:
                return None
            total += (n_in * price[0] + self.completion_tokens[model_id] * price[1]) / 1e6
        return total * discount

    def log(self, what: str, discount: float = 1.0) -> None:
        n_in, n_out = sum(self.prompt_tokens.values()), sum(self.completion_tokens.values())
        cost = self.cost_usd(discount)
        cost_text = f"~${cost:.4f}" if cost is not None else "cost unknown for this model"
        logger.info(f"{what}: {n_in:,} prompt + {n_out:,} completion tokens, {cost_text}")
