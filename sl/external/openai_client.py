"""OpenAI client construction, the retry of transient errors and the circuit breaker that
stops a client whose server is gone or refuses the key, error causes in one line, and token
accounting (shared by sampling, batches, fine-tuning)."""

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from loguru import logger

from sl.config import Settings, get_settings, require_openai_key
from sl.errors import RemoteError, UserError
from sl.utils.rate_limit import parse_duration

T = TypeVar("T")
# 429s are retried this many times before giving up on a single call (the sampling driver
# keeps retrying longer while other requests succeed).
MAX_RATE_LIMIT_RETRIES = 30
# The longest single wait before a retry (backoff or a server's Retry-After), seconds.
MAX_RETRY_WAIT_S = 60.0
# The circuit breaker (see `CircuitBreaker`): connection errors with no answer in between
# stop a client after this many seconds, or this many attempts spanning this many seconds.
BREAKER_WINDOW_S = 30.0
BREAKER_MAX_ATTEMPTS = 20
BREAKER_MIN_SPAN_S = 5.0

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


def _malformed() -> tuple[type[Exception], ...]:
    import openai

    return (json.JSONDecodeError, openai.APIResponseValidationError, MalformedResponseError)


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
    if isinstance(error, _malformed()):
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
    """Whether a retry may succeed: connection errors, timeouts, 429, 5xx and malformed
    bodies."""
    import openai

    if isinstance(error, (openai.APIConnectionError, openai.RateLimitError, *_malformed())):
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


class ServerUnreachableError(RemoteError):
    """No request of a client got through for a while: every request of it stops."""


class CircuitBreaker:
    """What every request of one client shares: it stops them all, at once, when the server
    cannot be reached or refuses the key, instead of letting each request retry on its own.

    A refused key (401/403) is fatal at the first answer. Connection errors (refused,
    unresolvable, timed out) are counted in a streak that any answer of the server ends;
    the streak trips the breaker when it has lasted `BREAKER_WINDOW_S`, or counts
    `BREAKER_MAX_ATTEMPTS` attempts over at least `BREAKER_MIN_SPAN_S` (so one burst of
    refusals during a server restart does not end a long run). Once tripped, `check()`
    raises the same one-line error for every request, and nothing more is sent.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.fatal: Exception | None = None
        self._streak = 0
        self._streak_start = 0.0

    def check(self) -> None:
        """Raise the recorded fatal error, if any (call before sending a request)."""
        if self.fatal is not None:
            raise self.fatal

    def answered(self) -> None:
        """The server answered (any HTTP status): it is reachable."""
        if self._streak:
            logger.info(f"{self.host} answers again")
        self._streak = 0

    def failed(self, error: BaseException, what: str) -> None:
        """Record a failed attempt at `what`.

        Raises:
            UserError: the key was refused (recorded: every later request raises it too).
            ServerUnreachableError: the connection errors tripped the breaker (recorded).
        """
        import openai

        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            self.fatal = final_error(error, what)
            raise self.fatal from error
        if not isinstance(error, openai.APIConnectionError):
            self.answered()
            return
        now = time.monotonic()
        if not self._streak:
            self._streak_start = now
            logger.warning(
                f"{describe_error(error)}: retrying; stopping if no request gets through "
                f"within {BREAKER_WINDOW_S:g} s"
            )
        self._streak += 1
        span = now - self._streak_start
        enough = self._streak >= BREAKER_MAX_ATTEMPTS and span >= BREAKER_MIN_SPAN_S
        if span >= BREAKER_WINDOW_S or enough:
            self.fatal = ServerUnreachableError(
                f"{what}: {self.host} cannot be reached: {self._streak} attempts over "
                f"{span:.0f} s failed ({describe_error(error)}) and none got through; check "
                f"OPENAI_BASE_URL and the network"
            )
            raise self.fatal from error


class Retries:
    """The retry budget of one request, shared by every OpenAI call: transient errors wait
    (jittered exponential backoff; a 429 waits for the server's Retry-After), anything else
    and an exhausted budget raise the one-line error. Every outcome is reported to the
    client's breaker."""

    def __init__(self, what: str, breaker: CircuitBreaker, settings: Settings) -> None:
        self.what, self.breaker, self.settings = what, breaker, settings
        self.failures = self.rate_limited = 0

    def delay_after(self, error: Exception, patient: bool = False) -> float:
        """Seconds to wait before retrying after `error` (at most `MAX_RETRY_WAIT_S`).
        `patient`: 429s are retried past `MAX_RATE_LIMIT_RETRIES` (other requests succeed).

        Raises:
            UserError | RemoteError: `error` cannot be fixed by a retry, or too many
                retries failed (chained to `error`); another exception (a bug) as it is.
        """
        import openai

        self.breaker.failed(error, self.what)
        attempts = self.failures + self.rate_limited + 1
        if isinstance(error, openai.RateLimitError):
            self.rate_limited += 1
            if self.rate_limited > MAX_RATE_LIMIT_RETRIES and not patient:
                raise final_error(error, self.what, attempts) from error
            wait = retry_after_s(error)
            if wait is None:
                wait = backoff_delay(self.rate_limited, self.settings)
            return min(wait, MAX_RETRY_WAIT_S)
        if not is_transient(error):
            if isinstance(error, openai.APIError):
                raise final_error(error, self.what) from error
            raise error
        self.failures += 1
        if self.failures > self.settings.openai_max_retries:
            raise final_error(error, self.what, attempts) from error
        return backoff_delay(self.failures, self.settings)


async def with_retries(call: Callable[[], Awaitable[T]], what: str, breaker: CircuitBreaker) -> T:
    """Await `call()`, retrying transient errors (see `Retries`), unless `breaker` stopped
    the client.

    Raises:
        RemoteError: the call still failed after OPENAI_MAX_RETRIES retries, failed in a way
            a retry cannot fix, or the server could not be reached; the message names the
            cause.
        UserError: the server refused the API key.
    """
    retries = Retries(what, breaker, get_settings())
    while True:
        breaker.check()
        try:
            result = await call()
        except Exception as e:
            delay = retries.delay_after(e)
            logger.warning(f"{what}: {describe_error(e)}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)
        else:
            breaker.answered()
            return result


def backoff_delay(failures: int, settings: Settings) -> float:
    """Jittered exponential backoff after `failures` consecutive failures (at most
    `MAX_RETRY_WAIT_S`)."""
    delay = settings.openai_backoff_base_s * 2 ** (failures - 1) * random.uniform(0.5, 1.5)
    return min(delay, MAX_RETRY_WAIT_S)


@dataclass
class Connection:
    """An OpenAI client and its circuit breaker: what one run (a sampling call, a batch, a
    fine-tuning job) talks through."""

    client: Any  # openai.AsyncOpenAI
    breaker: CircuitBreaker

    async def call(self, request: Callable[[Any], Awaitable[T]], what: str) -> T:
        """`request(client)`, with retries (see `with_retries`)."""
        return await with_retries(lambda: request(self.client), what, self.breaker)

    async def close(self) -> None:
        await self.client.close()


def connect(settings: Settings | None = None) -> Connection:
    """A new `Connection` to api.openai.com or OPENAI_BASE_URL."""
    settings = settings or get_settings()
    return Connection(make_async_client(settings), CircuitBreaker(server_host(settings)))


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
