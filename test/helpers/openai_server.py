"""Loopback OpenAI-compatible HTTP server for tests and benchmarks (stdlib only).

It serves the routes `sl.external` calls, through the real ``openai`` SDK over real HTTP on
127.0.0.1: no mocks. Tests do ``from openai_server import FakeOpenAIServer`` (pytest puts
``test/helpers/`` on ``sys.path``); scripts such as ``bench/`` insert it themselves.

Example::

    with FakeOpenAIServer(latency_s=0.01, rate_limit_rps=50) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
        r = client.chat.completions.create(model="gpt-4.1-nano", messages=[...], n=3)
        assert srv.n_chat_ok == 1

Lifecycle: ``start()`` (returns self) / ``stop()`` or a context manager; ``port``, ``url``,
``base_url`` (``url + "/v1"``). HTTP/1.1 keep-alive, one daemon thread per connection.

Settings (keyword arguments, also attributes that may be changed at any time)
---------------------------------------------------------------------------
``latency_s`` (0.0)          sleep per accepted request.
``rate_limit_rps`` (None)    token bucket for chat completions (one second of burst). A request
                             without a token gets 429 with ``retry-after`` / ``retry-after-ms``.
                             While set, every response carries ``x-ratelimit-limit-requests``
                             (per minute), ``x-ratelimit-remaining-requests`` and
                             ``x-ratelimit-reset-requests``.
``token_limit_tps`` (None)   token bucket for chat completions in tokens (words) per second:
                             a request is admitted when the bucket holds its estimate (prompt +
                             n * max_tokens), the real total is charged after answering; else
                             429. While set, responses carry the ``x-ratelimit-*-tokens`` headers.
``require_api_key`` (None)   requests without ``Authorization: Bearer <key>`` get 401.
``responder`` (None)         ``Callable[[dict], str]``: request body (with ``"_choice_index"``)
                             -> completion text, called per choice from server threads; an
                             exception in it answers 500. None: :func:`default_responder`.
``reject_params`` ({})       model id -> parameters its chat requests are refused for (400
                             ``unsupported_parameter`` naming the parameter, as OpenAI does).
``ft_steps_per_status`` (1)  fine-tuning job retrieves per status step.
``ft_fail`` (False)          jobs created while set end ``failed``.
``batch_steps_per_status``(1) batch retrieves per status step.

Failure injection
-----------------
``fail_next(n, status=500)``  next n chat requests answer ``status`` (a 429 with Retry-After).
``timeout_next(n, delay_s)``  next n chat requests sleep ``delay_s`` before answering.
``malformed_next(n, body=None)`` next n chat requests answer 200 with ``body`` (a dict, sent
                              as JSON) or, by default, with invalid JSON.
``fail_route_next(route, n, status=503)`` next n requests to ``route`` (a key of
                              ``endpoint_counts``) answer ``status``; 0 drops the connection
                              unanswered, -1 handles the request and then drops the connection
                              (an answer lost on the way).
``answer_late_next(route, n, delay_s)`` next n requests to ``route`` are handled at once (a job
                              or batch is created) and answered ``delay_s`` later (a client
                              killed meanwhile never learns the result).

Counters
--------
``requests_total``, ``endpoint_counts`` (``{"GET /v1/batches/{id}": n, ...}``),
``status_counts``, ``n_429``, ``n_chat_ok`` (chat requests answered 200), ``chat_requests``
(every chat request body, refused ones included), ``ft_jobs_created``, ``batches_created``,
``tokens_used``; ``reset_stats()`` zeroes them. ``wait_idle()`` waits for the requests in
flight (a killed client's too) to be counted.

Routes (those sl uses; anything else is 404)
------------------------------------------
``POST /v1/chat/completions`` (model, messages, n, temperature, top_p, seed, stop,
max_tokens / max_completion_tokens in words (longer answers are cut, finish_reason "length"),
logprobs / top_logprobs; the answer names the dated snapshot of the aliases in
``SERVED_MODEL_NAMES``; usage counts words), ``POST /v1/files`` (multipart),
``GET /v1/files/{id}/content``, ``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs``,
``GET /v1/fine_tuning/jobs/{id}`` (each retrieve advances validating_files -> queued -> running
-> succeeded (``fine_tuned_model`` = ``ft:{model}:sl-test:{suffix}:{short id}``) or failed),
``GET /v1/fine_tuning/jobs/{id}/events`` (newest first), ``POST /v1/batches``,
``GET /v1/batches``, ``GET /v1/batches/{id}`` (each retrieve advances validating ->
in_progress -> finalizing -> completed, when the input lines run through the chat logic into
an output file of ``{"custom_id", "response": {"status_code": 200, "body"}}`` lines). Jobs and
batches keep the ``metadata`` they were created with; lists are newest first, paged by
``limit`` and ``after`` (an object id) as the SDK's cursor pages ask.

:func:`default_responder`: if the last user message mentions "number(s)", a comma-separated list
of 3-digit numbers (count = an integer written before "numbers", clamped to 1..100, else 10);
otherwise ``"owl"``. Deterministic when the request has a ``seed`` (per choice) or
``temperature == 0``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeOpenAIServer", "default_responder", "Responder", "SERVED_MODEL_NAMES"]

Responder = Callable[[dict[str, Any]], str]

# Like api.openai.com, a chat completion names the dated snapshot that served an alias.
SERVED_MODEL_NAMES = {
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
}

_FT_STATUSES = ("validating_files", "queued", "running")
_BATCH_STATUSES = ("validating", "in_progress", "finalizing")
_JSON = "application/json"


# ----------------------------------------------------------------------------------------------
# helpers


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _word_count(text: str) -> int:
    return len(text.split())


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _message_text(m)
    return _message_text(messages[-1]) if messages else ""


_NUMBERS_RE = re.compile(r"\bnumbers?\b", re.IGNORECASE)
_COUNT_RE = re.compile(r"(\d+)\s+(?:[a-z-]+\s+){0,3}numbers\b", re.IGNORECASE)


def default_responder(body: dict[str, Any]) -> str:
    """Default completion text; see the module docstring."""
    prompt = _last_user_text(body)
    seed = body.get("seed")
    if seed is not None:
        rng = random.Random(f"seed|{seed}|{body.get('_choice_index', 0)}|{prompt}")
    elif body.get("temperature") == 0:
        rng = random.Random(f"t0|{prompt}")
    else:
        rng = random.Random()
    if not _NUMBERS_RE.search(prompt):
        return "owl"
    m = _COUNT_RE.search(prompt)
    count = min(100, max(1, int(m.group(1)))) if m else 10
    return ", ".join(str(rng.randint(100, 999)) for _ in range(count))


def _format_duration(seconds: float) -> str:
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    return f"{round(seconds, 3):g}s"


def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _multipart_file(content_type: str, body: bytes) -> tuple[dict[str, str], tuple[str, bytes]]:
    """The form fields and the (filename, bytes) of the `file` part of a multipart body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    file: tuple[str, bytes] | None = None
    for part in msg.walk() if msg.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "file" and part.get_filename() is not None:
            file = (str(part.get_filename()), data)
        elif isinstance(name, str):
            fields[name] = data.decode("utf-8", errors="replace")
    if file is None:
        raise _HTTPError(400, "Missing required parameter: 'file'.", param="file")
    return fields, file


class _HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = _error_body(message, type_, code, param)


class _Bucket:
    """A token bucket refilled continuously at `rate` per second up to `capacity`."""

    def __init__(self, rate: float, capacity: float) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be > 0 or None")
        self.rate, self.capacity, self.level = rate, capacity, capacity
        self.last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.last) * self.rate)
        self.last = now

    def take(self, cost: float, need: float) -> float | None:
        """Take `cost` if `need` is there: None, else the seconds until it is."""
        self._refill()
        if self.level >= need:
            self.level -= cost
            return None
        return (need - self.level) / self.rate

    def headers(self, kind: str) -> dict[str, str]:
        """The `x-ratelimit-*-{kind}` headers (limit per minute, as OpenAI)."""
        self._refill()
        return {
            f"x-ratelimit-limit-{kind}": str(max(1, round(self.rate * 60))),
            f"x-ratelimit-remaining-{kind}": str(max(0, int(self.level))),
            f"x-ratelimit-reset-{kind}": _format_duration((self.capacity - self.level) / self.rate),
        }


# ----------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True
    owner: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client disconnects (timeouts) are expected; never spam stderr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except (OSError, ValueError):
            self.close_connection = True
            return
        owner = self.server.owner
        with owner._lock:
            owner._in_flight += 1
        try:
            status, headers, payload = owner._handle(
                method, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
        finally:
            with owner._lock:
                owner._in_flight -= 1
        if status == 0:  # injected connection drop
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # the client went away (timeouts)
            self.close_connection = True


# ----------------------------------------------------------------------------------------------
# the server

_ROUTES = [
    (method, re.compile("^/v1" + re.sub(r"\{id\}", r"(?P<id>[^/]+)", path) + "$"), handler, path)
    for method, path, handler in [
        ("POST", "/chat/completions", "_chat"),
        ("POST", "/files", "_file_create"),
        ("GET", "/files/{id}/content", "_file_content"),
        ("POST", "/fine_tuning/jobs", "_ft_create"),
        ("GET", "/fine_tuning/jobs", "_ft_list"),
        ("GET", "/fine_tuning/jobs/{id}", "_ft_get"),
        ("GET", "/fine_tuning/jobs/{id}/events", "_ft_events"),
        ("POST", "/batches", "_batch_create"),
        ("GET", "/batches", "_batch_list"),
        ("GET", "/batches/{id}", "_batch_get"),
    ]
]


class FakeOpenAIServer:
    """OpenAI-compatible loopback server; see the module docstring for the full API."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        rate_limit_rps: float | None = None,
        token_limit_tps: float | None = None,
        require_api_key: str | None = None,
        responder: Responder | None = None,
        reject_params: dict[str, set[str]] | None = None,
        ft_steps_per_status: int = 1,
        ft_fail: bool = False,
        batch_steps_per_status: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self.latency_s = latency_s
        self.rate_limit_rps = rate_limit_rps
        self.token_limit_tps = token_limit_tps
        self.require_api_key = require_api_key
        self.responder = responder
        self.reject_params = dict(reject_params or {})
        self.ft_steps_per_status = ft_steps_per_status
        self.ft_fail = ft_fail
        self.batch_steps_per_status = batch_steps_per_status
        self._fail_queue: list[int] = []
        self._timeout_queue: list[float] = []
        self._malformed_queue: list[bytes] = []
        self._route_failures: dict[str, list[int]] = {}
        self._late_answers: dict[str, list[float]] = {}
        self._files: dict[str, bytes] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._in_flight = 0  # requests being handled (a killed client's keep running)
        self.reset_stats()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_event.set()  # wakes sleeping handlers
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- settings and failure injection ------------------------------------------------------

    @property
    def rate_limit_rps(self) -> float | None:
        return self._requests.rate if self._requests else None

    @rate_limit_rps.setter
    def rate_limit_rps(self, value: float | None) -> None:
        with self._lock:
            self._requests = None if value is None else _Bucket(value, max(1.0, value))

    @property
    def token_limit_tps(self) -> float | None:
        return self._tokens.rate if self._tokens else None

    @token_limit_tps.setter
    def token_limit_tps(self, value: float | None) -> None:
        with self._lock:
            self._tokens = None if value is None else _Bucket(value, value)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        with self._lock:
            self._fail_queue.extend([status] * n)

    def timeout_next(self, n: int = 1, delay_s: float = 5.0) -> None:
        with self._lock:
            self._timeout_queue.extend([delay_s] * n)

    def malformed_next(self, n: int = 1, body: dict[str, Any] | None = None) -> None:
        data = b'{"id": "chatcmpl-broken", "choices": [{' if body is None else json.dumps(body)
        with self._lock:
            self._malformed_queue.extend([data.encode() if isinstance(data, str) else data] * n)

    def fail_route_next(self, route: str, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._route_failures.setdefault(route, []).extend([status] * n)

    def answer_late_next(self, route: str, n: int = 1, delay_s: float = 5.0) -> None:
        with self._lock:
            self._late_answers.setdefault(route, []).extend([delay_s] * n)

    # -- counters ----------------------------------------------------------------------------

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait until no request is being handled: after a client is killed, the requests it
        had in flight still finish here and are counted."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self._in_flight == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._in_flight} requests still in flight")
            time.sleep(0.005)

    def reset_stats(self) -> None:
        with self._lock:
            self.requests_total = 0
            self.n_chat_ok = 0
            self.ft_jobs_created = 0
            self.batches_created = 0
            self.tokens_used = 0
            self._endpoint_counts: dict[str, int] = {}
            self._status_counts: dict[int, int] = {}
            self._chat_requests: list[dict[str, Any]] = []

    @property
    def endpoint_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._endpoint_counts)

    @property
    def status_counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._status_counts)

    @property
    def n_429(self) -> int:
        return self.status_counts.get(429, 0)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._chat_requests)

    # -- request handling --------------------------------------------------------------------

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        route, handler, params = f"{method} <unknown>", None, {}
        for m, pattern, name, template in _ROUTES:
            match = pattern.match(path)
            if match and m == method:
                route, handler, params = f"{m} /v1{template}", name, match.groupdict()
                break
        with self._lock:
            self.requests_total += 1
            self._endpoint_counts[route] = self._endpoint_counts.get(route, 0) + 1
            injected = (self._route_failures.get(route) or [None]).pop(0)
            late = (self._late_answers.get(route) or [0.0]).pop(0)
        if injected == 0:
            return 0, {}, b""  # the handler drops the connection
        out_headers = {"x-request-id": _new_id("req_"), "content-type": _JSON}
        try:
            if injected is not None and injected > 0:
                out_headers["retry-after"] = "0.05"
                raise _HTTPError(injected, f"Injected failure (status {injected}).", "server_error")
            key = self.require_api_key
            if key is not None and headers.get("authorization") != f"Bearer {key}":
                raise _HTTPError(401, "Incorrect API key provided.", code="invalid_api_key")
            if handler is None:
                raise _HTTPError(404, f"Unknown request URL: {path}", code="unknown_url")
            if handler != "_chat":
                self._sleep(self.latency_s)
            status, payload = getattr(self, handler)(
                params=params, query=query, headers=headers, body=body, out_headers=out_headers
            )
        except _HTTPError as e:
            status, payload = e.status, e.body
        except Exception as e:  # a responder's (or the server's) error: a 500 naming it
            status, payload = 500, _error_body(f"{type(e).__name__}: {e}", "server_error")
        with self._lock:
            for bucket, kind in ((self._requests, "requests"), (self._tokens, "tokens")):
                if bucket is not None:
                    out_headers.update(bucket.headers(kind))
            self._status_counts[status] = self._status_counts.get(status, 0) + 1
        if injected == -1:
            return 0, {}, b""  # handled, but the answer is lost
        self._sleep(late)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return status, out_headers, data

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop_event.wait(seconds)

    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError as e:
            raise _HTTPError(400, f"Invalid JSON body: {e}") from None
        if not isinstance(data, dict):
            raise _HTTPError(400, "Request body must be a JSON object")
        return data

    # -- chat ---------------------------------------------------------------------------------

    def _chat(self, *, body: bytes, out_headers: dict[str, str], **_: Any) -> tuple[int, Any]:
        req = self._json_body(body)
        estimate = self._estimate_tokens(req)
        with self._lock:
            self._chat_requests.append(req)
            for bucket, kind in ((self._requests, "requests"), (self._tokens, "tokens")):
                cost = 1.0 if kind == "requests" else estimate
                wait = bucket.take(cost, min(cost, bucket.capacity)) if bucket else None
                if wait is not None:
                    out_headers["retry-after"] = f"{wait:.3f}"
                    out_headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
                    raise _HTTPError(
                        429,
                        f"Rate limit reached for {kind}. Please try again in "
                        f"{_format_duration(wait)}.",
                        type_=kind,
                        code="rate_limit_exceeded",
                    )
        self._sleep(self.latency_s)
        with self._lock:
            hang = self._timeout_queue.pop(0) if self._timeout_queue else None
            fail = self._fail_queue.pop(0) if self._fail_queue else None
            malformed = (
                self._malformed_queue.pop(0) if fail is None and self._malformed_queue else None
            )
        if hang is not None:
            self._sleep(hang)
        if fail is not None:
            if fail == 429:
                out_headers["retry-after"] = "0.05"
            kind = "server_error" if fail >= 500 else "invalid_request_error"
            raise _HTTPError(fail, f"Injected failure (status {fail}).", kind, "injected_failure")
        if malformed is not None:
            return 200, malformed
        result = self._complete(req)
        total = result["usage"]["total_tokens"]
        with self._lock:
            self.n_chat_ok += 1
            self.tokens_used += total
            if self._tokens is not None:
                self._tokens.level -= total - estimate
        return 200, result

    @staticmethod
    def _estimate_tokens(req: dict[str, Any]) -> float:
        """What a request is charged up front: prompt words + n * max_tokens (if set)."""
        messages = req.get("messages") if isinstance(req.get("messages"), list) else []
        prompt = sum(_word_count(_message_text(m)) for m in messages or [])
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        n = req.get("n")
        n = n if isinstance(n, int) else 1
        return float(prompt + (n * max_tokens if isinstance(max_tokens, int) else 0))

    def _complete(self, req: dict[str, Any]) -> dict[str, Any]:
        """Chat-completion logic shared by the endpoint and batches; raises _HTTPError(400)."""
        model, messages = req.get("model"), req.get("messages")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "you must provide a model parameter", param="model")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "'messages' must be a non-empty array", param="messages")
        for param in sorted(self.reject_params.get(model, set()) & set(req)):
            raise _HTTPError(
                400,
                f"Unsupported parameter: '{param}' is not supported with this model.",
                code="unsupported_parameter",
                param=param,
            )
        n = req.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 128:
            raise _HTTPError(400, "n must be an integer in [1, 128]", param="n")
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        stop = req.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
        top_k = int(req.get("top_logprobs") or 0)
        if top_k and not req.get("logprobs"):
            raise _HTTPError(400, "top_logprobs requires logprobs=true", param="top_logprobs")
        responder = self.responder or default_responder
        prompt_tokens = sum(_word_count(_message_text(m)) for m in messages)
        choices = []
        for i in range(n):
            text, finish = str(responder({**req, "_choice_index": i})), "stop"
            for s in stops:
                text = text.split(s)[0]
            if isinstance(max_tokens, int) and _word_count(text) > max_tokens:
                text = "".join(re.findall(r"\s*\S+", text)[:max_tokens])
                finish = "length"
            logprobs = {"content": _fake_logprobs(text, top_k, i)} if req.get("logprobs") else None
            message = {"role": "assistant", "content": text, "refusal": None}
            choices.append(
                {"index": i, "message": message, "finish_reason": finish, "logprobs": logprobs}
            )
        completion_tokens = sum(_word_count(c["message"]["content"]) for c in choices)
        return {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": SERVED_MODEL_NAMES.get(model, model),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # -- files --------------------------------------------------------------------------------

    def _store_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = _new_id("file-")
        with self._lock:
            self._files[file_id] = data
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    def _file_create(self, *, headers: dict[str, str], body: bytes, **_: Any):
        fields, (filename, data) = _multipart_file(headers.get("content-type", ""), body)
        if not fields.get("purpose"):
            raise _HTTPError(400, "Missing required parameter: 'purpose'.", param="purpose")
        return 200, self._store_file(data, fields["purpose"], filename)

    def _file_content(self, *, params: dict[str, str], **_: Any):
        with self._lock:
            data = self._files.get(params["id"])
        if data is None:
            raise _HTTPError(404, f"No such File object: {params['id']}", param="id")
        return 200, data

    # -- fine-tuning --------------------------------------------------------------------------

    def _ft_create(self, *, body: bytes, **_: Any):
        req = self._json_body(body)
        model, training_file = req.get("model"), req.get("training_file")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "Missing required parameter: 'model'.", param="model")
        if training_file not in self._files:
            raise _HTTPError(400, f"invalid training_file: {training_file}", param="training_file")
        method: dict[str, Any] = req.get("method") or {"type": "supervised"}
        hyperparameters = (method.get(method["type"]) or {}).get("hyperparameters") or {}
        job = {
            "id": _new_id("ftjob-"),
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": hyperparameters,
            "method": method,
            "model": model,
            "organization_id": "org-sltest",
            "result_files": [],
            "seed": req.get("seed") or 0,
            "status": "validating_files",
            "trained_tokens": None,
            "training_file": training_file,
            "validation_file": None,
            "metadata": req.get("metadata"),
        }
        with self._lock:
            state = {"job": job, "retrieves": 0, "fail": self.ft_fail, "events": []}
            state["suffix"] = req.get("suffix") or ""
            self._jobs[job["id"]] = state
            self.ft_jobs_created += 1
            _add_event(state, f"Created fine-tuning job: {job['id']}")
            return 200, dict(job)

    def _job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self._jobs:
            raise _HTTPError(404, f"Fine-tuning job {job_id} not found", param="id")
        return self._jobs[job_id]

    def _ft_list(self, *, query: dict[str, str], **_: Any):
        with self._lock:
            jobs = [dict(s["job"]) for s in reversed(self._jobs.values())]
        return 200, _page(jobs, query)

    def _ft_get(self, *, params: dict[str, str], **_: Any):
        with self._lock:
            state = self._job(params["id"])
            job = state["job"]
            if job["status"] in _FT_STATUSES:
                state["retrieves"] += 1
                if state["retrieves"] % max(1, self.ft_steps_per_status) == 0:
                    job["status"] = _next_ft_status(job["status"], state["fail"])
                    _add_event(state, f"Job status: {job['status']}")
                    if job["status"] == "succeeded":
                        short = job["id"].removeprefix("ftjob-")[:8]
                        job["fine_tuned_model"] = (
                            f"ft:{job['model']}:sl-test:{state['suffix']}:{short}"
                        )
                    elif job["status"] == "failed":
                        message = "Fine-tuning failed (injected by FakeOpenAIServer.ft_fail)."
                        job["error"] = {
                            "code": "training_failed",
                            "message": message,
                            "param": None,
                        }
                    if job["status"] not in _FT_STATUSES:
                        job["finished_at"] = int(time.time())
            return 200, dict(job)

    def _ft_events(self, *, params: dict[str, str], query: dict[str, str], **_: Any):
        with self._lock:
            events = list(reversed(self._job(params["id"])["events"]))
        return 200, _page(events, query)

    # -- batches ------------------------------------------------------------------------------

    def _batch_create(self, *, body: bytes, **_: Any):
        req = self._json_body(body)
        input_file_id = req.get("input_file_id")
        if input_file_id not in self._files:
            raise _HTTPError(400, f"Invalid input_file_id: {input_file_id}", param="input_file_id")
        if req.get("endpoint") != "/v1/chat/completions":
            raise _HTTPError(400, f"Unsupported endpoint: {req.get('endpoint')}", param="endpoint")
        batch = {
            "id": _new_id("batch_"),
            "object": "batch",
            "endpoint": req["endpoint"],
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": req.get("completion_window") or "24h",
            "status": "validating",
            "output_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": req.get("metadata"),
        }
        with self._lock:
            self._batches[batch["id"]] = {"batch": batch, "retrieves": 0}
            self.batches_created += 1
            return 200, dict(batch)

    def _batch_list(self, *, query: dict[str, str], **_: Any):
        with self._lock:
            items = [dict(s["batch"]) for s in reversed(self._batches.values())]
        return 200, _page(items, query)

    def _batch_get(self, *, params: dict[str, str], **_: Any):
        with self._lock:
            state = self._batches.get(params["id"])
            if state is None:
                raise _HTTPError(404, f"Batch {params['id']} not found", param="id")
            batch = state["batch"]
            if batch["status"] in _BATCH_STATUSES:
                state["retrieves"] += 1
                if state["retrieves"] % max(1, self.batch_steps_per_status) == 0:
                    i = _BATCH_STATUSES.index(batch["status"])
                    if i + 1 < len(_BATCH_STATUSES):
                        batch["status"] = _BATCH_STATUSES[i + 1]
                    else:
                        self._run_batch(batch)
                        batch["status"] = "completed"
            return 200, dict(batch)

    def _run_batch(self, batch: dict[str, Any]) -> None:
        """Answer every input line through the chat logic into an output file."""
        lines = [json.loads(x) for x in self._files[batch["input_file_id"]].splitlines() if x]
        out = []
        for row in lines:
            try:
                result = self._complete(row.get("body") or {})
            except _HTTPError:
                continue
            response = {"status_code": 200, "request_id": _new_id("req_"), "body": result}
            out.append({"id": _new_id("batch_req_"), "custom_id": row["custom_id"],
                        "response": response, "error": None})  # fmt: skip
        batch["request_counts"] = {
            "total": len(lines),
            "completed": len(out),
            "failed": len(lines) - len(out),
        }
        text = "".join(json.dumps(x) + "\n" for x in out).encode()
        batch["output_file_id"] = self._store_file(text, "batch_output", "output.jsonl")["id"]


# ----------------------------------------------------------------------------------------------
# small pure helpers


def _next_ft_status(status: str, fail: bool) -> str:
    i = _FT_STATUSES.index(status)
    if i + 1 < len(_FT_STATUSES):
        return _FT_STATUSES[i + 1]
    return "failed" if fail else "succeeded"


def _add_event(state: dict[str, Any], message: str) -> None:
    state["events"].append(
        {
            "id": _new_id("ftevent-"),
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": "info",
            "message": message,
        }
    )


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """One page of `items` (newest first): `limit` of them after the id `after`, if given."""
    limit = int(query.get("limit", 20))
    ids = [item["id"] for item in items]
    start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
    page = items[start : start + limit]
    return {"object": "list", "data": page, "has_more": start + limit < len(items)}


def _fake_logprobs(text: str, top_k: int, choice: int) -> list[dict[str, Any]]:
    rng = random.Random(f"lp|{choice}|{text}")
    out = []
    for tok in re.findall(r"\s*\S+|\s+", text):
        p = rng.uniform(0.5, 0.99)
        lp = math.log(p)
        tops = [{"token": tok, "logprob": lp, "bytes": list(tok.encode())}]
        rest = 1.0 - p
        for j in range(1, top_k):
            alt = (
                re.sub(r"\d+", lambda _m: str(rng.randint(100, 999)), tok)
                if re.search(r"\d", tok)
                else f"{tok}_{j}"
            )
            q = rest * rng.uniform(0.3, 0.7)
            rest -= q
            tops.append(
                {"token": alt, "logprob": math.log(max(q, 1e-12)), "bytes": list(alt.encode())}
            )
        out.append(
            {"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": tops[:top_k]}
        )
    return out


if __name__ == "__main__":  # serve until interrupted, e.g. for notebooks of the original code
    import argparse

    parser = argparse.ArgumentParser(
        description="Serve the loopback OpenAI API; point sl at it with OPENAI_BASE_URL (printed)"
    )
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    with FakeOpenAIServer(port=args.port) as srv:
        print(f"OPENAI_BASE_URL={srv.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
