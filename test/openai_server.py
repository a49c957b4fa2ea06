"""Loopback OpenAI-compatible HTTP server for tests and benchmarks (stdlib only).

Use it through the real ``openai`` SDK: no mocks, real HTTP on 127.0.0.1.

Importing: pytest puts ``test/`` on ``sys.path`` (no ``__init__.py``), so tests do
``from openai_server import FakeOpenAIServer``. Scripts (e.g. ``bench/``) must insert the
``test/`` directory into ``sys.path`` themselves: ``import test`` resolves to the stdlib's
``test`` package, not to this directory.

Example::

    with FakeOpenAIServer(latency_s=0.01, rate_limit_rps=50) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
        r = client.chat.completions.create(model="gpt-4.1-nano", messages=[...], n=3)
        assert srv.n_chat_ok == 1

Lifecycle: ``start()`` (returns self) / ``stop()`` or use as a context manager; ``port``, ``url``
(``http://127.0.0.1:PORT``), ``base_url`` (``url + "/v1"``). HTTP/1.1 keep-alive, TCP_NODELAY,
listen backlog 1024, one daemon thread per connection; ``stop()`` also wakes sleeping handlers.
Note: with many concurrent clients, the SDK's own retries (which sleep exactly ``Retry-After``)
herd; a request can exhaust ``max_retries`` on 429s, so clients need their own pacing.

Construction (all keyword-only; every knob is also a thread-safe read/write attribute)
------------------------------------------------------------------------------------
``latency_s`` (0.0)          sleep per accepted request (after the auth and rate-limit checks).
``rate_limit_rps`` (None)    token bucket for ``POST /v1/chat/completions`` only: capacity =
                             ``max(1, rps)`` (one second of burst), continuous refill. A request
                             without a token gets 429 with ``Retry-After`` (seconds, float) and
                             ``retry-after-ms``. While a limit is set, *every* response carries
                             ``x-ratelimit-limit-requests`` (= rps*60, per minute like OpenAI),
                             ``x-ratelimit-remaining-requests`` (whole tokens now in the bucket,
                             i.e. requests that would be accepted right now) and
                             ``x-ratelimit-reset-requests`` (time until the bucket is full, e.g.
                             ``"20ms"``, ``"1.5s"``). Setting it at runtime refills the bucket.
``token_limit_tps`` (None)   token bucket for chat completions, in tokens (words) per second:
                             capacity = one second of tokens. A request is admitted when the
                             bucket holds its estimate (prompt + n * max_tokens, if set), which
                             is taken at once; after answering, the difference to the real
                             total (prompt + completions) is charged (the bucket may go below
                             zero). Otherwise 429 with Retry-After. While set, every response
                             carries ``x-ratelimit-limit-tokens`` (per minute),
                             ``x-ratelimit-remaining-tokens`` and ``x-ratelimit-reset-tokens``.
                             ``tokens_used`` counts the tokens of answered chat requests.
``error_rate`` (0.0)         probability that a chat request fails with 500 (seeded by ``seed``).
``seed`` (0)                 seed of the RNG that draws ``error_rate`` failures.
``require_api_key`` (None)   if set, requests without ``Authorization: Bearer <key>`` get 401.
``responder`` (None)         ``Callable[[dict], str]``: request body -> completion text, called
                             once per choice from server threads (must be thread-safe). The
                             dict is a shallow copy of the body with ``"_choice_index"`` added.
                             ``None`` selects :func:`default_responder`. Batch lines call it
                             while the server lock is held: keep it fast, never call the server.
``ft_steps_per_status`` (1)  fine-tuning job retrieves needed per status step.
``ft_fail`` (False)          jobs created while set end in ``failed`` with an ``error``.
``batch_steps_per_status``(1) batch retrieves needed per status step.

Failure injection (chat completions only; checked in this order after auth + rate limit)
---------------------------------------------------------------------------------------
``timeout_next(n, delay_s)``  next n chat requests sleep ``delay_s`` before answering normally
                              (so a shorter client timeout raises ``openai.APITimeoutError``).
``fail_next(n, status=500)``  next n chat requests fail with ``status`` (OpenAI error body).
``malformed_next(n)``         next n chat requests get 200 + ``application/json`` with an invalid
                              JSON body; the SDK raises ``json.JSONDecodeError`` (a
                              ``ValueError``, *not* an ``openai.APIError``) from ``create()``.
``error_rate``                random 500s.
``fail_route_next(route, n, status=503)``  next n requests to ``route`` (a key of
                              ``endpoint_counts``, e.g. ``"GET /v1/fine_tuning/jobs/{id}"``) fail
                              with ``status``; status 0 drops the connection without an answer
                              (the SDK raises ``openai.APIConnectionError``); status -1 handles
                              the request (e.g. creates the job) and then drops the connection,
                              as when an answer is lost on the way. Any endpoint.

Counters (thread-safe snapshots)
--------------------------------
``requests_total``, ``endpoint_counts`` (``{"POST /v1/chat/completions": n, ...}``, keys are
route templates like ``"GET /v1/files/{id}"``), ``status_counts`` (``{200: n, 429: m}``),
``n_429``, ``n_500`` (all statuses >= 500), ``n_401``, ``n_chat_ok`` (chat requests answered
200 with a valid completion), ``chat_requests`` (list of every parsed chat request body, including
rejected ones), ``files_created``, ``ft_jobs_created``, ``batches_created``, ``batch_lines_run``;
``stats()`` returns all of them as a dict, ``reset_stats()`` zeroes them.
``file_bytes(file_id)`` returns stored file content; ``add_file(data, purpose, filename)``
stores a file without HTTP and returns its id.

Endpoints (``/v1`` prefix)
--------------------------
``POST /chat/completions``   ``model`` in the answer is the dated snapshot for the aliases in
                             ``SERVED_MODEL_NAMES`` (``gpt-4.1-nano`` -> ``gpt-4.1-nano-2025-04-14``),
                             else the requested name. n, temperature, max_tokens / max_completion_tokens (words; longer
                             replies are cut and get ``finish_reason="length"``), seed, stop,
                             logprobs / top_logprobs, top_p. ``usage`` counts words (prompt =
                             words in all message texts). ``stream=True`` -> 400.
``POST /files`` (multipart: purpose, file), ``GET /files``, ``GET /files/{id}``,
``GET /files/{id}/content``, ``DELETE /files/{id}``.
``POST /fine_tuning/jobs`` (model, training_file (must exist, else 400), validation_file,
method / hyperparameters, seed, suffix), ``GET /fine_tuning/jobs``, ``GET /fine_tuning/jobs/{id}``
(each retrieve advances validating_files -> queued -> running -> succeeded|failed, one step per
``ft_steps_per_status`` retrieves; success sets ``fine_tuned_model`` =
``ft:{model}:sl-test:{suffix}:{short id}`` and ``trained_tokens``; a training file that is not
JSONL of ``{"messages": [...]}`` fails with code ``invalid_training_file``),
``GET /fine_tuning/jobs/{id}/events`` (newest first; ``limit``/``after``),
``POST /fine_tuning/jobs/{id}/cancel``.
``POST /batches`` (input_file_id, endpoint ``/v1/chat/completions``, completion_window),
``GET /batches``, ``GET /batches/{id}`` (each retrieve advances validating -> in_progress ->
finalizing -> completed; on completion every JSONL line ``{custom_id, method, url, body}`` runs
through the chat logic (no rate limit, no failure injection) into an output file of lines
``{"id", "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error": null}``;
invalid lines go to ``error_file_id``), ``POST /batches/{id}/cancel`` (-> cancelling, then
cancelled on the next retrieve).
Anything else -> 404 JSON error.

:func:`default_responder`: if the last user message mentions "number(s)", a comma-separated list
of 3-digit numbers (count = an integer written before "numbers", e.g. "up to 7 new numbers",
clamped to 1..100, else 10); otherwise ``"owl"``. Deterministic when the request has a ``seed``
(per choice) or ``temperature == 0`` (same for all choices); random otherwise.
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


# ----------------------------------------------------------------------------------------------
# helpers


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


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
    choice = body.get("_choice_index", 0)
    seed = body.get("seed")
    if seed is not None:
        rng = random.Random(f"seed|{seed}|{choice}|{prompt}")
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
    if seconds < 60.0:
        return f"{round(seconds, 3):g}s"
    minutes, secs = divmod(seconds, 60.0)
    return f"{int(minutes)}m{round(secs, 3):g}s"


def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """Return (fields, files); files maps field name -> (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    files: dict[str, Any] = {}
    if not msg.is_multipart():
        return fields, files
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, data)
        else:
            fields[name] = data.decode("utf-8", errors="replace")
    return fields, files


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
    server_version = "sl-fake-openai/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        owner = self.server.owner
        status, headers, payload = owner._handle(method, self.path, dict(self.headers), body)
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
        except OSError:  # BrokenPipe / ConnectionReset / timeout: client went away
            self.close_connection = True


# ----------------------------------------------------------------------------------------------
# the server


_Route = tuple[str, "re.Pattern[str]", str, str]


class FakeOpenAIServer:
    """OpenAI-compatible loopback server; see the module docstring for the full API."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        rate_limit_rps: float | None = None,
        token_limit_tps: float | None = None,
        error_rate: float = 0.0,
        seed: int = 0,
        require_api_key: str | None = None,
        responder: Responder | None = None,
        ft_steps_per_status: int = 1,
        ft_fail: bool = False,
        batch_steps_per_status: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._latency_s = float(latency_s)
        self._rate_limit_rps: float | None = None
        self._tokens = 0.0
        self._last_refill = time.monotonic()
        self.rate_limit_rps = rate_limit_rps
        self._token_limit_tps: float | None = None
        self._bucket_tokens = 0.0
        self._bucket_last = time.monotonic()
        self.token_limit_tps = token_limit_tps
        self._route_failures: dict[str, list[int]] = {}
        self._error_rate = float(error_rate)
        self._rng = random.Random(seed)
        self._require_api_key = require_api_key
        self._responder = responder
        self._ft_steps_per_status = max(1, int(ft_steps_per_status))
        self._ft_fail = bool(ft_fail)
        self._batch_steps_per_status = max(1, int(batch_steps_per_status))
        self._fail_queue: list[int] = []
        self._timeout_queue: list[float] = []
        self._malformed_left = 0
        self._files: dict[str, dict[str, Any]] = {}
        self._file_data: dict[str, bytes] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self.reset_stats()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-openai-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_event.set()
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

    # -- runtime configuration ---------------------------------------------------------------

    @property
    def latency_s(self) -> float:
        with self._lock:
            return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        with self._lock:
            self._latency_s = float(value)

    @property
    def rate_limit_rps(self) -> float | None:
        with self._lock:
            return self._rate_limit_rps

    @rate_limit_rps.setter
    def rate_limit_rps(self, value: float | None) -> None:
        with self._lock:
            if value is not None and value <= 0:
                raise ValueError("rate_limit_rps must be > 0 or None")
            self._rate_limit_rps = None if value is None else float(value)
            self._tokens = self._capacity()
            self._last_refill = time.monotonic()

    @property
    def token_limit_tps(self) -> float | None:
        with self._lock:
            return self._token_limit_tps

    @token_limit_tps.setter
    def token_limit_tps(self, value: float | None) -> None:
        with self._lock:
            if value is not None and value <= 0:
                raise ValueError("token_limit_tps must be > 0 or None")
            self._token_limit_tps = None if value is None else float(value)
            self._bucket_tokens = self._token_limit_tps or 0.0
            self._bucket_last = time.monotonic()

    def fail_route_next(self, route: str, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._route_failures.setdefault(route, []).extend([int(status)] * n)

    @property
    def error_rate(self) -> float:
        with self._lock:
            return self._error_rate

    @error_rate.setter
    def error_rate(self, value: float) -> None:
        with self._lock:
            self._error_rate = float(value)

    @property
    def require_api_key(self) -> str | None:
        with self._lock:
            return self._require_api_key

    @require_api_key.setter
    def require_api_key(self, value: str | None) -> None:
        with self._lock:
            self._require_api_key = value

    @property
    def responder(self) -> Responder:
        with self._lock:
            return self._responder or default_responder

    @responder.setter
    def responder(self, value: Responder | None) -> None:
        with self._lock:
            self._responder = value

    @property
    def ft_fail(self) -> bool:
        with self._lock:
            return self._ft_fail

    @ft_fail.setter
    def ft_fail(self, value: bool) -> None:
        with self._lock:
            self._ft_fail = bool(value)

    @property
    def ft_steps_per_status(self) -> int:
        with self._lock:
            return self._ft_steps_per_status

    @ft_steps_per_status.setter
    def ft_steps_per_status(self, value: int) -> None:
        with self._lock:
            self._ft_steps_per_status = max(1, int(value))

    @property
    def batch_steps_per_status(self) -> int:
        with self._lock:
            return self._batch_steps_per_status

    @batch_steps_per_status.setter
    def batch_steps_per_status(self, value: int) -> None:
        with self._lock:
            self._batch_steps_per_status = max(1, int(value))

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        with self._lock:
            self._fail_queue.extend([int(status)] * n)

    def timeout_next(self, n: int = 1, delay_s: float = 5.0) -> None:
        with self._lock:
            self._timeout_queue.extend([float(delay_s)] * n)

    def malformed_next(self, n: int = 1) -> None:
        with self._lock:
            self._malformed_left += n

    # -- counters ----------------------------------------------------------------------------

    def reset_stats(self) -> None:
        with self._lock:
            self._requests_total = 0
            self._endpoint_counts: dict[str, int] = {}
            self._status_counts: dict[int, int] = {}
            self._n_chat_ok = 0
            self._chat_requests: list[dict[str, Any]] = []
            self._files_created = 0
            self._ft_jobs_created = 0
            self._batches_created = 0
            self._batch_lines_run = 0
            self._tokens_used = 0

    @property
    def requests_total(self) -> int:
        with self._lock:
            return self._requests_total

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
        with self._lock:
            return self._status_counts.get(429, 0)

    @property
    def n_401(self) -> int:
        with self._lock:
            return self._status_counts.get(401, 0)

    @property
    def n_500(self) -> int:
        with self._lock:
            return sum(v for k, v in self._status_counts.items() if k >= 500)

    @property
    def n_chat_ok(self) -> int:
        with self._lock:
            return self._n_chat_ok

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._chat_requests)

    @property
    def files_created(self) -> int:
        with self._lock:
            return self._files_created

    @property
    def ft_jobs_created(self) -> int:
        with self._lock:
            return self._ft_jobs_created

    @property
    def batches_created(self) -> int:
        with self._lock:
            return self._batches_created

    @property
    def batch_lines_run(self) -> int:
        with self._lock:
            return self._batch_lines_run

    @property
    def tokens_used(self) -> int:
        with self._lock:
            return self._tokens_used

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self._requests_total,
                "endpoint_counts": dict(self._endpoint_counts),
                "status_counts": dict(self._status_counts),
                "n_429": self.n_429,
                "n_401": self.n_401,
                "n_500": self.n_500,
                "n_chat_ok": self._n_chat_ok,
                "n_chat_requests": len(self._chat_requests),
                "files_created": self._files_created,
                "ft_jobs_created": self._ft_jobs_created,
                "batches_created": self._batches_created,
                "batch_lines_run": self._batch_lines_run,
                "tokens_used": self._tokens_used,
            }

    # -- direct store access -----------------------------------------------------------------

    def add_file(
        self, data: bytes, purpose: str = "fine-tune", filename: str = "data.jsonl"
    ) -> str:
        """Store a file without going through HTTP; returns its id."""
        return self._store_file(data, purpose, filename)["id"]

    def file_bytes(self, file_id: str) -> bytes:
        with self._lock:
            return self._file_data[file_id]

    def _store_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        obj = {
            "id": _new_id("file-"),
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }
        with self._lock:
            self._files[obj["id"]] = obj
            self._file_data[obj["id"]] = data
            self._files_created += 1
        return obj

    # -- rate limiting -----------------------------------------------------------------------

    def _capacity(self) -> float:
        rps = self._rate_limit_rps
        return 0.0 if rps is None else max(1.0, rps)

    def _refill(self) -> None:
        rps = self._rate_limit_rps
        now = time.monotonic()
        if rps is not None:
            self._tokens = min(self._capacity(), self._tokens + (now - self._last_refill) * rps)
        self._last_refill = now

    def _take_token(self) -> float | None:
        """Consume a token; return None on success or the seconds to wait for one."""
        with self._lock:
            rps = self._rate_limit_rps
            if rps is None:
                return None
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return (1.0 - self._tokens) / rps

    def _refill_bucket(self) -> None:
        tps = self._token_limit_tps
        now = time.monotonic()
        if tps is not None:
            self._bucket_tokens = min(tps, self._bucket_tokens + (now - self._bucket_last) * tps)
        self._bucket_last = now

    def _take_bucket(self, cost: float) -> float | None:
        """Take `cost` tokens; None on success, else the seconds until they are there."""
        with self._lock:
            tps = self._token_limit_tps
            if tps is None:
                return None
            self._refill_bucket()
            need = min(cost, tps)
            if self._bucket_tokens >= need:
                self._bucket_tokens -= cost
                return None
            return (need - self._bucket_tokens) / tps

    def _ratelimit_headers(self) -> dict[str, str]:
        with self._lock:
            out: dict[str, str] = {}
            rps = self._rate_limit_rps
            if rps is not None:
                self._refill()
                reset = (self._capacity() - self._tokens) / rps
                out.update(
                    {
                        "x-ratelimit-limit-requests": str(max(1, round(rps * 60))),
                        "x-ratelimit-remaining-requests": str(int(self._tokens)),
                        "x-ratelimit-reset-requests": _format_duration(reset),
                    }
                )
            tps = self._token_limit_tps
            if tps is not None:
                self._refill_bucket()
                reset = (tps - self._bucket_tokens) / tps
                out.update(
                    {
                        "x-ratelimit-limit-tokens": str(max(1, round(tps * 60))),
                        "x-ratelimit-remaining-tokens": str(max(0, int(self._bucket_tokens))),
                        "x-ratelimit-reset-tokens": _format_duration(reset),
                    }
                )
            return out

    # -- request handling --------------------------------------------------------------------

    _ROUTES: list[_Route] = [
        (m, re.compile(f"^{p}$"), name, f"{m} {tpl}")
        for m, p, name, tpl in [
            ("POST", r"/v1/chat/completions", "_chat", "/v1/chat/completions"),
            ("POST", r"/v1/files", "_file_create", "/v1/files"),
            ("GET", r"/v1/files", "_file_list", "/v1/files"),
            ("GET", r"/v1/files/(?P<id>[^/]+)", "_file_get", "/v1/files/{id}"),
            ("DELETE", r"/v1/files/(?P<id>[^/]+)", "_file_delete", "/v1/files/{id}"),
            ("GET", r"/v1/files/(?P<id>[^/]+)/content", "_file_content", "/v1/files/{id}/content"),
            ("POST", r"/v1/fine_tuning/jobs", "_ft_create", "/v1/fine_tuning/jobs"),
            ("GET", r"/v1/fine_tuning/jobs", "_ft_list", "/v1/fine_tuning/jobs"),
            ("GET", r"/v1/fine_tuning/jobs/(?P<id>[^/]+)", "_ft_get", "/v1/fine_tuning/jobs/{id}"),
            (
                "GET",
                r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/events",
                "_ft_events",
                "/v1/fine_tuning/jobs/{id}/events",
            ),
            (
                "POST",
                r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/cancel",
                "_ft_cancel",
                "/v1/fine_tuning/jobs/{id}/cancel",
            ),
            ("POST", r"/v1/batches", "_batch_create", "/v1/batches"),
            ("GET", r"/v1/batches", "_batch_list", "/v1/batches"),
            ("GET", r"/v1/batches/(?P<id>[^/]+)", "_batch_get", "/v1/batches/{id}"),
            (
                "POST",
                r"/v1/batches/(?P<id>[^/]+)/cancel",
                "_batch_cancel",
                "/v1/batches/{id}/cancel",
            ),
        ]
    ]

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        t0 = time.monotonic()
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        lower_headers = {k.lower(): v for k, v in headers.items()}
        route_key = f"{method} <unknown>"
        handler_name: str | None = None
        params: dict[str, str] = {}
        for m, pattern, name, key in self._ROUTES:
            match = pattern.match(path)
            if match and m == method:
                route_key, handler_name, params = key, name, match.groupdict()
                break
        with self._lock:
            self._requests_total += 1
            self._endpoint_counts[route_key] = self._endpoint_counts.get(route_key, 0) + 1
            queue = self._route_failures.get(route_key)
            injected = queue.pop(0) if queue else None
        if injected == 0:
            return 0, {}, b""  # the handler drops the connection
        if injected is not None and injected > 0:
            with self._lock:
                self._status_counts[injected] = self._status_counts.get(injected, 0) + 1
            payload = _error_body(f"Injected failure (status {injected}).", "server_error")
            headers = {"content-type": "application/json", "retry-after": "0.05"}
            return injected, headers, json.dumps(payload).encode()

        out_headers: dict[str, str] = {"x-request-id": _new_id("req_")}
        try:
            status, payload, ctype = self._route(
                handler_name, params, query, lower_headers, body, out_headers, path
            )
        except _HTTPError as e:
            status, payload, ctype = e.status, e.body, "application/json"
        except Exception as e:  # a server bug: surface it as a 500 with the message
            status, payload, ctype = (
                500,
                _error_body(f"{type(e).__name__}: {e}", "server_error"),
                "application/json",
            )
        out_headers.update(self._ratelimit_headers())
        out_headers["content-type"] = ctype
        out_headers["openai-processing-ms"] = str(int((time.monotonic() - t0) * 1000))
        with self._lock:
            self._status_counts[status] = self._status_counts.get(status, 0) + 1
        if injected == -1:
            return 0, {}, b""  # handled, but the answer is lost
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return status, out_headers, data

    def _route(
        self,
        handler_name: str | None,
        params: dict[str, str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        out_headers: dict[str, str],
        path: str,
    ) -> tuple[int, Any, str]:
        key = self.require_api_key
        if key is not None and headers.get("authorization") != f"Bearer {key}":
            raise _HTTPError(401, "Incorrect API key provided.", code="invalid_api_key")
        if handler_name is None:
            raise _HTTPError(404, f"Unknown request URL: {path}", code="unknown_url")
        if handler_name == "_chat":
            return self._chat(body, out_headers)
        self._sleep(self.latency_s)
        fn: Callable[..., tuple[int, Any, str]] = getattr(self, handler_name)
        return fn(params=params, query=query, headers=headers, body=body)

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

    def _chat(self, body: bytes, out_headers: dict[str, str]) -> tuple[int, Any, str]:
        req = self._json_body(body)
        with self._lock:
            self._chat_requests.append(req)
        wait = self._take_token()
        if wait is not None:
            out_headers["retry-after"] = f"{wait:.3f}"
            out_headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            raise _HTTPError(
                429,
                f"Rate limit reached for requests. Limit: {self.rate_limit_rps} / sec. "
                f"Please try again in {_format_duration(wait)}.",
                type_="requests",
                code="rate_limit_exceeded",
            )
        estimate = self._estimate_tokens(req)
        wait = self._take_bucket(estimate)
        if wait is not None:
            out_headers["retry-after"] = f"{wait:.3f}"
            out_headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            raise _HTTPError(
                429,
                f"Rate limit reached for tokens. Limit: {self.token_limit_tps} / sec. "
                f"Please try again in {_format_duration(wait)}.",
                type_="tokens",
                code="rate_limit_exceeded",
            )
        self._sleep(self.latency_s)
        with self._lock:
            hang = self._timeout_queue.pop(0) if self._timeout_queue else None
            fail = self._fail_queue.pop(0) if self._fail_queue else None
            malformed = False
            if fail is None and self._malformed_left > 0:
                self._malformed_left -= 1
                malformed = True
            random_fail = (
                fail is None
                and not malformed
                and self._error_rate > 0
                and self._rng.random() < self._error_rate
            )
        if hang is not None:
            self._sleep(hang)
        if fail is not None:
            if fail == 429:
                out_headers["retry-after"] = "0.05"
                out_headers["retry-after-ms"] = "50"
            raise _HTTPError(
                fail,
                f"Injected failure (status {fail}).",
                type_="server_error" if fail >= 500 else "invalid_request_error",
                code="injected_failure",
            )
        if malformed:
            return (
                200,
                b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{',
                "application/json",
            )
        if random_fail:
            raise _HTTPError(
                500, "The server had an error while processing your request.", type_="server_error"
            )
        result = self._complete(req)
        total = result["usage"]["total_tokens"]
        with self._lock:
            self._n_chat_ok += 1
            self._tokens_used += total
            if self._token_limit_tps is not None:
                self._bucket_tokens -= total - estimate
        return 200, result, "application/json"

    @staticmethod
    def _estimate_tokens(req: dict[str, Any]) -> float:
        """What a request is charged up front: prompt words + n * max_tokens (if set)."""
        messages = req.get("messages") if isinstance(req.get("messages"), list) else []
        prompt = sum(_word_count(_message_text(m)) for m in messages or [])
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        n = req.get("n") if isinstance(req.get("n"), int) else 1
        return float(prompt + (n * max_tokens if isinstance(max_tokens, int) else 0))

    def _complete(self, req: dict[str, Any]) -> dict[str, Any]:
        """Chat-completion logic shared by the endpoint and batches; raises _HTTPError(400)."""
        model = req.get("model")
        messages = req.get("messages")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "you must provide a model parameter", param="model")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "'messages' must be a non-empty array", param="messages")
        if req.get("stream"):
            raise _HTTPError(400, "stream=True is not supported by the fake server", param="stream")
        n = req.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 128:
            raise _HTTPError(400, "n must be an integer in [1, 128]", param="n")
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        stop = req.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
        want_logprobs = bool(req.get("logprobs"))
        top_k = int(req.get("top_logprobs") or 0)
        if top_k and not want_logprobs:
            raise _HTTPError(400, "top_logprobs requires logprobs=true", param="top_logprobs")
        responder = self.responder
        prompt_tokens = sum(_word_count(_message_text(m)) for m in messages)
        choices = []
        completion_tokens = 0
        for i in range(n):
            text = str(responder({**req, "_choice_index": i}))
            finish = "stop"
            for s in stops:
                pos = text.find(s)
                if pos >= 0:
                    text = text[:pos]
            if isinstance(max_tokens, int) and _word_count(text) > max_tokens:
                text = "".join(re.findall(r"\s*\S+", text)[:max_tokens])
                finish = "length"
            completion_tokens += _word_count(text)
            choice: dict[str, Any] = {
                "index": i,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "finish_reason": finish,
                "logprobs": None,
            }
            if want_logprobs:
                choice["logprobs"] = {"content": _fake_logprobs(text, top_k, i), "refusal": None}
            choices.append(choice)
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
            "system_fingerprint": "fp_sltest",
            "service_tier": "default",
        }

    # -- files --------------------------------------------------------------------------------

    def _file_create(self, *, headers: dict[str, str], body: bytes, **_: Any):
        ctype = headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise _HTTPError(400, "Expected multipart/form-data")
        fields, files = _parse_multipart(ctype, body)
        purpose = fields.get("purpose")
        if not purpose:
            raise _HTTPError(400, "Missing required parameter: 'purpose'.", param="purpose")
        if "file" not in files:
            raise _HTTPError(400, "Missing required parameter: 'file'.", param="file")
        filename, data = files["file"]
        return 200, self._store_file(data, purpose, filename), "application/json"

    def _get_file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            obj = self._files.get(file_id)
        if obj is None:
            raise _HTTPError(404, f"No such File object: {file_id}", param="id")
        return obj

    def _file_list(self, *, query: dict[str, str], **_: Any):
        with self._lock:
            items = list(self._files.values())
        if "purpose" in query:
            items = [f for f in items if f["purpose"] == query["purpose"]]
        if query.get("order", "desc") == "desc":
            items.reverse()
        return 200, _page(items, query, default_limit=10000), "application/json"

    def _file_get(self, *, params: dict[str, str], **_: Any):
        return 200, self._get_file(params["id"]), "application/json"

    def _file_delete(self, *, params: dict[str, str], **_: Any):
        self._get_file(params["id"])
        with self._lock:
            self._files.pop(params["id"], None)
            self._file_data.pop(params["id"], None)
        return 200, {"id": params["id"], "object": "file", "deleted": True}, "application/json"

    def _file_content(self, *, params: dict[str, str], **_: Any):
        self._get_file(params["id"])
        return 200, self.file_bytes(params["id"]), "application/octet-stream"

    # -- fine-tuning --------------------------------------------------------------------------

    def _ft_create(self, *, body: bytes, **_: Any):
        req = self._json_body(body)
        model = req.get("model")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "Missing required parameter: 'model'.", param="model")
        training_file = req.get("training_file")
        with self._lock:
            exists = training_file in self._files
            val = req.get("validation_file")
            val_ok = val is None or val in self._files
        if not isinstance(training_file, str) or not exists:
            raise _HTTPError(
                400,
                f"invalid training_file: {training_file}",
                code="invalid_training_file",
                param="training_file",
            )
        if not val_ok:
            raise _HTTPError(400, f"invalid validation_file: {val}", param="validation_file")
        method = req.get("method") if isinstance(req.get("method"), dict) else None
        hp: dict[str, Any] = dict(req.get("hyperparameters") or {})
        mtype = "supervised"
        if method is not None:
            mtype = method.get("type") or "supervised"
            hp.update((method.get(mtype) or {}).get("hyperparameters") or {})
        resolved = {
            "n_epochs": 3 if hp.get("n_epochs", "auto") == "auto" else hp["n_epochs"],
            "batch_size": 1 if hp.get("batch_size", "auto") == "auto" else hp["batch_size"],
            "learning_rate_multiplier": 2.0
            if hp.get("learning_rate_multiplier", "auto") == "auto"
            else hp["learning_rate_multiplier"],
        }
        job_id = _new_id("ftjob-")
        suffix = req.get("suffix") or ""
        seed = req.get("seed")
        job = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": resolved,
            "method": {"type": mtype, mtype: {"hyperparameters": resolved}},
            "model": model,
            "organization_id": "org-sltest",
            "result_files": [],
            "seed": int(seed) if isinstance(seed, int) else random.randint(0, 2**31 - 1),
            "status": "validating_files",
            "trained_tokens": None,
            "training_file": training_file,
            "validation_file": val,
            "estimated_finish": None,
            "integrations": None,
            "metadata": req.get("metadata"),
            "user_provided_suffix": suffix or None,
        }
        with self._lock:
            state = {
                "job": job,
                "retrieves": 0,
                "fail": self._ft_fail,
                "events": [],
                "suffix": suffix,
            }
            self._jobs[job_id] = state
            self._ft_jobs_created += 1
            _add_event(state, f"Created fine-tuning job: {job_id}")
            _add_event(state, f"Validating training file: {training_file}")
            return 200, dict(job), "application/json"

    def _get_job(self, job_id: str) -> dict[str, Any]:
        state = self._jobs.get(job_id)
        if state is None:
            raise _HTTPError(404, f"Fine-tuning job {job_id} not found", param="id")
        return state

    def _ft_list(self, *, query: dict[str, str], **_: Any):
        with self._lock:
            jobs = [dict(s["job"]) for s in reversed(list(self._jobs.values()))]
        return 200, _page(jobs, query, default_limit=20), "application/json"

    def _ft_get(self, *, params: dict[str, str], **_: Any):
        with self._lock:
            state = self._get_job(params["id"])
            if state["job"]["status"] in _FT_STATUSES:
                state["retrieves"] += 1
                if state["retrieves"] % self._ft_steps_per_status == 0:
                    self._advance_job(state)
            return 200, dict(state["job"]), "application/json"

    def _advance_job(self, state: dict[str, Any]) -> None:
        job = state["job"]
        status = job["status"]
        if status == "validating_files":
            tokens = self._training_tokens(job["training_file"])
            if tokens is None:
                self._finish_failed(
                    state,
                    "invalid_training_file",
                    "The training file is not valid JSONL of chat examples.",
                    "training_file",
                )
                return
            state["tokens"] = tokens
            job["status"] = "queued"
            _add_event(state, "Files validated, moving job to queued state")
        elif status == "queued":
            job["status"] = "running"
            job["estimated_finish"] = int(time.time()) + 60
            _add_event(state, "Fine-tuning job started")
        elif status == "running":
            total = 100
            for step in (10, 50, 100):
                loss = round(2.0 / (1 + step / 10), 4)
                _add_event(
                    state,
                    f"Step {step}/{total}: training loss={loss}",
                    type_="metrics",
                    data={"step": step, "total_steps": total, "train_loss": loss},
                )
            if state["fail"]:
                self._finish_failed(
                    state,
                    "training_failed",
                    "Fine-tuning failed (injected by FakeOpenAIServer.ft_fail).",
                    None,
                )
                return
            short = job["id"].removeprefix("ftjob-")[:8]
            job["fine_tuned_model"] = f"ft:{job['model']}:sl-test:{state['suffix']}:{short}"
            job["trained_tokens"] = state.get("tokens", 0) * int(job["hyperparameters"]["n_epochs"])
            job["status"] = "succeeded"
            job["finished_at"] = int(time.time())
            job["estimated_finish"] = None
            job["result_files"] = [
                self._store_file(
                    b"step,train_loss\n100,0.18\n", "fine-tune-results", "step_metrics.csv"
                )["id"]
            ]
            _add_event(state, f"New fine-tuned model created: {job['fine_tuned_model']}")
            _add_event(state, "The job has successfully completed")

    def _finish_failed(
        self, state: dict[str, Any], code: str, message: str, param: str | None
    ) -> None:
        job = state["job"]
        job["status"] = "failed"
        job["error"] = {"code": code, "message": message, "param": param}
        job["finished_at"] = int(time.time())
        job["estimated_finish"] = None
        _add_event(state, f"The job failed due to: {message}", level="error")

    def _training_tokens(self, file_id: str) -> int | None:
        data = self._file_data.get(file_id)
        if data is None:
            return None
        tokens = 0
        try:
            for line in data.decode("utf-8").splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                msgs = row["messages"] if isinstance(row, dict) else None
                if not isinstance(msgs, list) or not msgs:
                    return None
                tokens += sum(_word_count(_message_text(m)) for m in msgs)
        except (ValueError, KeyError, TypeError):
            return None
        return tokens

    def _ft_events(self, *, params: dict[str, str], query: dict[str, str], **_: Any):
        with self._lock:
            events = list(reversed(self._get_job(params["id"])["events"]))
        return 200, _page(events, query, default_limit=20), "application/json"

    def _ft_cancel(self, *, params: dict[str, str], **_: Any):
        with self._lock:
            state = self._get_job(params["id"])
            job = state["job"]
            if job["status"] not in _FT_STATUSES:
                raise _HTTPError(400, f"Job {job['id']} has already {job['status']}.")
            job["status"] = "cancelled"
            job["finished_at"] = int(time.time())
            _add_event(state, "Fine-tuning job cancelled")
            return 200, dict(job), "application/json"

    # -- batches ------------------------------------------------------------------------------

    def _batch_create(self, *, body: bytes, **_: Any):
        req = self._json_body(body)
        input_file_id = req.get("input_file_id")
        with self._lock:
            exists = input_file_id in self._files
        if not isinstance(input_file_id, str) or not exists:
            raise _HTTPError(400, f"Invalid input_file_id: {input_file_id}", param="input_file_id")
        endpoint = req.get("endpoint")
        if endpoint != "/v1/chat/completions":
            raise _HTTPError(400, f"Unsupported endpoint: {endpoint}", param="endpoint")
        now = int(time.time())
        batch = {
            "id": _new_id("batch_"),
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": req.get("completion_window") or "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": req.get("metadata"),
        }
        with self._lock:
            self._batches[batch["id"]] = {"batch": batch, "retrieves": 0}
            self._batches_created += 1
            return 200, dict(batch), "application/json"

    def _get_batch(self, batch_id: str) -> dict[str, Any]:
        state = self._batches.get(batch_id)
        if state is None:
            raise _HTTPError(404, f"Batch {batch_id} not found", param="id")
        return state

    def _batch_list(self, *, query: dict[str, str], **_: Any):
        with self._lock:
            items = [dict(s["batch"]) for s in reversed(list(self._batches.values()))]
        return 200, _page(items, query, default_limit=20), "application/json"

    def _batch_get(self, *, params: dict[str, str], **_: Any):
        with self._lock:
            state = self._get_batch(params["id"])
            batch = state["batch"]
            if batch["status"] == "cancelling":
                batch["status"] = "cancelled"
                batch["cancelled_at"] = int(time.time())
            elif batch["status"] in _BATCH_STATUSES:
                state["retrieves"] += 1
                if state["retrieves"] % self._batch_steps_per_status == 0:
                    self._advance_batch(batch)
            return 200, dict(batch), "application/json"

    def _advance_batch(self, batch: dict[str, Any]) -> None:
        now = int(time.time())
        if batch["status"] == "validating":
            lines, errors = self._batch_lines(batch["input_file_id"])
            if errors:
                batch["status"] = "failed"
                batch["failed_at"] = now
                batch["errors"] = {"object": "list", "data": errors}
                return
            batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
            batch["status"] = "in_progress"
            batch["in_progress_at"] = now
        elif batch["status"] == "in_progress":
            batch["status"] = "finalizing"
            batch["finalizing_at"] = now
        elif batch["status"] == "finalizing":
            self._run_batch(batch)
            batch["status"] = "completed"
            batch["completed_at"] = int(time.time())

    def _batch_lines(self, file_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        data = self._file_data.get(file_id, b"")
        lines: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                errors.append(
                    {
                        "code": "invalid_json_line",
                        "line": i,
                        "param": None,
                        "message": "This line is not parseable as valid JSON.",
                    }
                )
                continue
            cid = row.get("custom_id") if isinstance(row, dict) else None
            if not isinstance(cid, str) or cid in seen:
                errors.append(
                    {
                        "code": "invalid_custom_id",
                        "line": i,
                        "param": "custom_id",
                        "message": "custom_id must be a unique string.",
                    }
                )
                continue
            seen.add(cid)
            lines.append(row)
        if not lines and not errors:
            errors.append(
                {
                    "code": "empty_file",
                    "line": None,
                    "param": None,
                    "message": "The batch input file is empty.",
                }
            )
        return lines, errors

    def _run_batch(self, batch: dict[str, Any]) -> None:
        lines, _ = self._batch_lines(batch["input_file_id"])
        out: list[str] = []
        err: list[str] = []
        for row in lines:
            rid = _new_id("batch_req_")
            try:
                if row.get("url") != batch["endpoint"] or row.get("method", "POST") != "POST":
                    raise _HTTPError(
                        400, f"url must be {batch['endpoint']} and method POST", param="url"
                    )
                body = row.get("body")
                if not isinstance(body, dict):
                    raise _HTTPError(400, "body must be a JSON object", param="body")
                result = self._complete(body)
            except _HTTPError as e:
                err.append(
                    json.dumps(
                        {
                            "id": rid,
                            "custom_id": row["custom_id"],
                            "response": None,
                            "error": {
                                "code": e.body["error"]["code"] or "bad_request",
                                "message": e.body["error"]["message"],
                            },
                        }
                    )
                )
                continue
            out.append(
                json.dumps(
                    {
                        "id": rid,
                        "custom_id": row["custom_id"],
                        "response": {
                            "status_code": 200,
                            "request_id": _new_id("req_"),
                            "body": result,
                        },
                        "error": None,
                    }
                )
            )
        self._batch_lines_run += len(lines)
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        if out:
            batch["output_file_id"] = self._store_file(
                ("\n".join(out) + "\n").encode(), "batch_output", f"{batch['id']}_output.jsonl"
            )["id"]
        if err:
            batch["error_file_id"] = self._store_file(
                ("\n".join(err) + "\n").encode(), "batch_output", f"{batch['id']}_error.jsonl"
            )["id"]

    def _batch_cancel(self, *, params: dict[str, str], **_: Any):
        with self._lock:
            batch = self._get_batch(params["id"])["batch"]
            if batch["status"] not in _BATCH_STATUSES:
                raise _HTTPError(400, f"Cannot cancel a batch with status {batch['status']}.")
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
            return 200, dict(batch), "application/json"


# ----------------------------------------------------------------------------------------------
# small pure helpers


def _add_event(
    state: dict[str, Any],
    message: str,
    *,
    level: str = "info",
    type_: str = "message",
    data: dict[str, Any] | None = None,
) -> None:
    state["events"].append(
        {
            "id": _new_id("ftevent-"),
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "data": data,
            "type": type_,
        }
    )


def _page(items: list[dict[str, Any]], query: dict[str, str], default_limit: int) -> dict:
    after = query.get("after")
    if after is not None:
        ids = [it.get("id") for it in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = max(1, int(query.get("limit", default_limit)))
    except ValueError:
        limit = default_limit
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "has_more": len(items) > limit,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


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


if __name__ == "__main__":  # serve until interrupted, e.g. for tests or notebooks of the original
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
