"""OpenAI (and OpenAI-compatible) chat completions with adaptive rate limiting and retries.

Concurrency is bounded by OPENAI_MAX_CONCURRENCY (per process and event loop, across
concurrent calls); requests are paced by requests *and* tokens, learned from the server's
`x-ratelimit-*` headers and 429s (honouring Retry-After); 5xx, timeouts, connection errors and
malformed bodies retry with jittered exponential backoff (`openai_client.Retries`, shared
with the Batch and fine-tuning paths). A 429 is never fatal while the server answers other
requests. A request that still fails is reported in a `SampleError` naming the cause, after
every other result was delivered — never dropped silently. A refused key, or a server that
cannot be reached (`openai_client.CircuitBreaker`), stops every request at once with one line.
"""

import asyncio
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from loguru import logger

from sl.config import get_settings
from sl.errors import RemoteError, UserError
from sl.external.openai_client import (
    CircuitBreaker,
    Connection,
    MalformedResponseError,
    Retries,
    ServerUnreachableError,
    UsageTracker,
    base_model_id,
    connect,
    make_async_client,
    server_host,
)
from sl.llm.data_models import Chat, LLMResponse, Model, SampleCfg, StopReason
from sl.llm.driver import OnResult, SampleError
from sl.utils.rate_limit import AdaptiveRateLimiter, parse_duration

# A request keeps retrying 429s past MAX_RATE_LIMIT_RETRIES as long as some request of this
# driver succeeded within this many seconds.
RATE_LIMIT_PATIENCE_S = 300.0
# Completion tokens assumed per choice before the server has reported any usage.
DEFAULT_COMPLETION_TOKENS = 16
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def is_reasoning_model(model_id: str) -> bool:
    """Whether `model_id` is a reasoning model (o1, o3, o4, gpt-5 families), which refuses
    temperature, top_p and logprobs; fine-tuned ids (`ft:o4-mini-2025-04-16:org::abc`) are
    judged by their base model."""
    return base_model_id(model_id).startswith(_REASONING_PREFIXES)


def _convert_logprobs(choice: Any) -> list[dict[str, float]] | None:
    if choice.logprobs is None or not choice.logprobs.content:
        return None
    out = []
    for token in choice.logprobs.content:
        entry = {alt.token: alt.logprob for alt in (token.top_logprobs or [])}
        entry[token.token] = token.logprob
        out.append(entry)
    return out


def check_completion(completion: Any) -> Any:
    """`completion` if it has the fields the driver reads: at least one choice, each with a
    message and a finish reason.

    Raises:
        MalformedResponseError: the server answered 200 with another body (retried).
    """
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError("the completion has no choices")
    for choice in choices:
        if getattr(choice, "message", None) is None or not hasattr(choice, "finish_reason"):
            raise MalformedResponseError("a choice has no message or finish_reason")
    return completion


class OpenAIDriver:
    """Samples through the chat completions API of OpenAI or an OpenAI-compatible server."""

    def __init__(self) -> None:
        self.limiter = AdaptiveRateLimiter(get_settings().openai_start_rps)
        self.usage = UsageTracker()
        # Parameters the server rejected, per model id: a judge on the same server may
        # accept what the sampled model refused.
        self.dropped_params: dict[str, set[str]] = {}
        self._semaphores: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        # Learned token accounting: prompt tokens per character, completion tokens per choice.
        self._tokens_per_char = 0.25
        self._completion_tokens = float(DEFAULT_COMPLETION_TOKENS)
        self.last_success = time.monotonic()

    def _semaphore(self) -> asyncio.Semaphore:
        """One OPENAI_MAX_CONCURRENCY semaphore per event loop, shared by concurrent calls."""
        loop = asyncio.get_running_loop()
        if loop not in self._semaphores:
            self._semaphores[loop] = asyncio.Semaphore(get_settings().openai_max_concurrency)
        return self._semaphores[loop]

    def estimate_tokens(self, params: dict[str, Any]) -> float:
        """Tokens a request will count against the server's token budget (prompt + all
        completions), from what the server has reported so far."""
        chars = sum(len(m["content"]) for m in params["messages"])
        n = params.get("n") or 1
        per_choice = params.get("max_tokens") or params.get("max_completion_tokens")
        completion = (
            min(per_choice, self._completion_tokens) if per_choice else self._completion_tokens
        )
        return chars * self._tokens_per_char + n * completion

    def _learn_tokens(self, params: dict[str, Any], completion: Any) -> float | None:
        """Update the token estimates from a response's usage; return its total tokens."""
        usage = completion.usage
        if usage is None:
            return None
        chars = sum(len(m["content"]) for m in params["messages"])
        if chars:
            self._tokens_per_char += 0.2 * (usage.prompt_tokens / chars - self._tokens_per_char)
        n = max(1, len(completion.choices))
        self._completion_tokens += 0.2 * (usage.completion_tokens / n - self._completion_tokens)
        return float(usage.prompt_tokens + usage.completion_tokens)

    def request_params(self, model: Model, chat: Chat, cfg: SampleCfg) -> dict[str, Any]:
        """The request body, with only the sampling fields that are set and accepted.

        Raises:
            UserError: `cfg.min_p` is set (the chat completions API has no min-p).
        """
        if cfg.min_p is not None:
            raise UserError(
                f"min_p {cfg.min_p}: the OpenAI chat completions API has no min-p sampling; "
                "use top_p, or an open model",
                param="min_p",
            )
        params: dict[str, Any] = {
            "model": model.id,
            "messages": [{"role": m.role.value, "content": m.content} for m in chat.messages],
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "seed": cfg.seed,
            "n": cfg.n if cfg.n > 1 else None,
            "stop": cfg.stop,
        }
        if cfg.max_tokens is not None:
            # api.openai.com wants max_completion_tokens; other servers know max_tokens.
            key = "max_tokens" if get_settings().openai_base_url else "max_completion_tokens"
            params[key] = cfg.max_tokens
        if cfg.logprobs:
            params["logprobs"] = True
            params["top_logprobs"] = cfg.top_logprobs
        if is_reasoning_model(model.id):
            for key in ("temperature", "top_p", "logprobs", "top_logprobs"):
                params.pop(key, None)
        dropped = self.dropped_params.get(model.id, set())
        return {k: v for k, v in params.items() if v is not None and k not in dropped}

    async def _request(
        self, connection: Connection, model: Model, chat: Chat, cfg: SampleCfg
    ) -> list[LLMResponse]:
        import openai

        retries = Retries("chat completion", connection.breaker, get_settings())
        while True:
            connection.breaker.check()
            params = self.request_params(model, chat, cfg)
            estimate = self.estimate_tokens(params)
            await self.limiter.acquire(estimate)
            try:
                raw = await connection.client.chat.completions.with_raw_response.create(**params)
                completion = check_completion(raw.parse())
            except Exception as e:
                param = _unsupported_param(e) if isinstance(e, openai.BadRequestError) else None
                if param and param in params and param not in ("model", "messages"):
                    logger.warning(f"server rejects {param!r}: not sending it again")
                    self.dropped_params.setdefault(model.id, set()).add(param)
                    continue
                stalled = time.monotonic() - self.last_success > RATE_LIMIT_PATIENCE_S
                delay = retries.delay_after(e, patient=not stalled)
                if isinstance(e, openai.RateLimitError):
                    self.limiter.on_rate_limited(delay)  # the pacer waits (Retry-After)
                else:
                    await asyncio.sleep(delay)
            else:
                connection.breaker.answered()
                self.last_success = time.monotonic()
                self._observe_headers(raw.headers, estimate, self._learn_tokens(params, completion))
                return self._convert(model, completion)

    def _observe_headers(self, headers: Any, estimate: float, actual: float | None) -> None:
        def number(name: str) -> float | None:
            value = headers.get(name)
            try:
                return float(value) if value else None
            except ValueError:
                return None

        self.limiter.on_success(
            number("x-ratelimit-limit-requests"),
            number("x-ratelimit-remaining-requests"),
            parse_duration(headers.get("x-ratelimit-reset-requests")),
        )
        self.limiter.on_tokens(
            number("x-ratelimit-limit-tokens"),
            number("x-ratelimit-remaining-tokens"),
            parse_duration(headers.get("x-ratelimit-reset-tokens")),
            estimate,
            actual,
        )

    def _convert(self, model: Model, completion: Any) -> list[LLMResponse]:
        if completion.usage is not None:
            self.usage.add(
                model.id, completion.usage.prompt_tokens, completion.usage.completion_tokens
            )
        return [
            LLMResponse(
                model_id=model.id,
                completion=choice.message.content or "",
                stop_reason=StopReason.parse(choice.finish_reason),
                logprobs=_convert_logprobs(choice),
                served_model_id=completion.model or None,
            )
            for choice in completion.choices
        ]

    async def batch_sample(
        self,
        model: Model,
        chats: Sequence[Chat],
        sample_cfgs: Sequence[SampleCfg],
        on_result: OnResult | None = None,
    ) -> list[list[LLMResponse]]:
        """Sample every chat concurrently; see the module docstring for the guarantees."""
        settings = get_settings()
        connection = Connection(make_async_client(settings), CircuitBreaker(server_host(settings)))
        semaphore = self._semaphore()
        results: list[list[LLMResponse] | None] = [None] * len(chats)
        failures: dict[int, BaseException] = {}

        async def run_one(i: int) -> None:
            async with semaphore:
                try:
                    results[i] = await self._request(connection, model, chats[i], sample_cfgs[i])
                except (UserError, ServerUnreachableError):
                    raise  # fatal for every request: the others are cancelled below
                except Exception as e:  # reported below, after the other requests finish
                    failures[i] = e
                    return
            if on_result is not None:
                on_result(i, results[i])  # type: ignore[arg-type]

        tasks = [asyncio.ensure_future(run_one(i)) for i in range(len(chats))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await connection.close()
            self.usage.log(f"{model.id} so far")
        if failures:
            raise SampleError(failures)
        return [r for r in results if r is not None]


def _unsupported_param(error: Any) -> str | None:
    body = error.body if isinstance(error.body, dict) else {}
    body = body.get("error", body) if isinstance(body, dict) else {}
    code = str(body.get("code") or "")
    if "unsupported" in code or "not supported" in str(body.get("message", "")).lower():
        return body.get("param")
    return None


_DRIVERS: dict[str | None, OpenAIDriver] = {}


def get_driver() -> OpenAIDriver:
    """The driver for the current OPENAI_BASE_URL, kept for the process so that its learned
    rate and token counts persist across calls."""
    base_url = get_settings().openai_base_url
    if base_url not in _DRIVERS:
        _DRIVERS[base_url] = OpenAIDriver()
    return _DRIVERS[base_url]


# The original code's module-level functions (model given by id), as thin layers over the driver.


async def batch_sample(
    model_id: str, input_chats: Sequence[Chat], sample_cfgs: Sequence[SampleCfg]
) -> list[LLMResponse]:
    """One completion per chat from the OpenAI model `model_id`, in input order.

    The original code's `openai_driver.batch_sample`; it goes through the driver of this
    module (pacing, retries), so a failure after retries raises `SampleError`.
    """
    model = Model(id=model_id, type="openai")
    cfgs = [cfg.model_copy(update={"n": 1}) for cfg in sample_cfgs]
    groups = await get_driver().batch_sample(model, input_chats, cfgs)
    return [group[0] for group in groups]


async def sample(model_id: str, input_chat: Chat, sample_cfg: SampleCfg) -> LLMResponse:
    """One completion for one chat from the OpenAI model `model_id` (the original
    `openai_driver.sample`)."""
    responses = await batch_sample(model_id, [input_chat], [sample_cfg])
    return responses[0]


def get_client() -> Any:
    """An `openai.AsyncOpenAI` for api.openai.com or OPENAI_BASE_URL, with OPENAI_API_KEY (the
    original code's `get_client`). A new client per call: the original kept one for the
    process, which breaks once the event loop it first ran in is closed."""
    return make_async_client()


# Seconds between checks of an uploaded file's processing.
UPLOAD_POLL_S = 10.0


async def upload_file(file_path: str | Path, purpose: Literal["fine-tune"] = "fine-tune") -> Any:
    """Upload a file to the OpenAI Files API and wait until it is processed (the original
    code's `upload_file`); returns the `FileObject`. Transient errors are retried.

    Raises:
        UserError: the file cannot be read.
        RemoteError: the server refused the file or stayed unreachable.
    """
    path = Path(file_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(
            f"{path}: cannot read the file to upload ({e.strerror})", path=path
        ) from None
    connection = connect()
    try:
        file = await connection.call(
            lambda c: c.files.create(file=(path.name, data), purpose=purpose), f"uploading {path}"
        )
        while file.status not in ("processed", "error"):
            await asyncio.sleep(UPLOAD_POLL_S)
            file = await connection.call(
                lambda c, file_id=file.id: c.files.retrieve(file_id), f"checking {path}"
            )
    finally:
        await connection.close()
    if file.status == "error":
        raise RemoteError(f"OpenAI could not process {path} ({file.id}): {file.status_details}")
    return file
