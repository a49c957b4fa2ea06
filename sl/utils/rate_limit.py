"""An adaptive request pacer: evenly spaced requests, rates learned from the server.

Two budgets bind, whichever is tighter: requests and tokens. Requests are paced one slot of
`1/rate` seconds apart, at the rate known when the slot comes (a rate learned meanwhile
shortens a wait already begun); the rate starts at a guess, jumps to just under the server's
advertised limit when one is reported, and shrinks multiplicatively on each 429 (with a
pause for Retry-After). While nothing is known (no advertised limit, no 429 yet) it starts
slowly like TCP: each success doubles it, to at least `SLOW_START_FLOOR_RPS` and at most twice
the successes of the last second, so a low starting guess costs seconds, not minutes;
afterwards it grows slowly while requests succeed. Once the server advertises a
token limit (`x-ratelimit-limit-tokens`), each request also takes `tokens / token_rate`
seconds of a second clock, charged with an estimate before the request and corrected with
the tokens the server counted after it. It holds no asyncio objects, so one instance can be
shared across event loops.
"""

import asyncio
import re
import time
from collections import deque

# The request rate a first success lifts a lower starting guess to (requests/s).
SLOW_START_FLOOR_RPS = 1.0
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds in an OpenAI reset header ("20ms", "1.5s", "6m0s") or a plain number."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_RE.findall(text)
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(value) * scale[unit] for value, unit in parts)


class AdaptiveRateLimiter:
    """Paces requests; call `acquire()` before each, then report the outcome."""

    def __init__(self, start_rps: float, min_rps: float = 0.2, headroom: float = 0.995):
        self.rate = start_rps
        self.ceiling: float | None = None
        self.min_rps = min_rps
        self.headroom = headroom
        self._last_slot = -float("inf")
        self._recent_successes: deque[float] = deque()
        self.token_rate: float | None = None  # tokens/s, once the server advertises a limit
        self._next_token_slot = 0.0
        self._paused_until = 0.0
        self._last_decrease = 0.0
        self.n_rate_limited = 0

    async def acquire(self, tokens: float = 0.0) -> None:
        """Wait for the next free slot of a request of about `tokens` tokens. Waiters re-check
        at least every 50 ms, so a rate learned meanwhile applies at once (the next slot is
        reckoned from the last one at the current rate, never reserved ahead)."""
        while True:
            now = time.monotonic()
            # A late waiter may catch up by up to 50 ms of slots, no more (no bursts).
            slot = max(self._last_slot + 1.0 / self.rate, now - 0.05)
            self._next_token_slot = max(self._next_token_slot, now - 0.05)
            ready = max(slot, self._paused_until)
            if self.token_rate:
                ready = max(ready, self._next_token_slot)
            if now >= ready:
                self._last_slot = slot
                if self.token_rate:
                    self._next_token_slot += tokens / self.token_rate
                return
            await asyncio.sleep(min(ready - now, 0.05))

    def on_success(
        self, limit_per_minute: float | None, remaining: float | None, reset_s: float | None
    ) -> None:
        """Learn from a successful response's rate-limit headers (any may be None)."""
        if limit_per_minute:
            ceiling = self.headroom * limit_per_minute / 60.0
            if self.ceiling is None:
                self.rate = ceiling
            self.ceiling = ceiling
        if remaining is not None and remaining <= 0 and reset_s:
            self.pause(reset_s)
        now = time.monotonic()
        self._recent_successes.append(now)
        while self._recent_successes[0] < now - 1.0:
            self._recent_successes.popleft()
        if self.ceiling is None and self.token_rate is None and not self.n_rate_limited:
            measured = 2.0 * len(self._recent_successes)  # twice the successes of the last 1 s
            self.rate = max(self.rate, min(2.0 * self.rate, measured), SLOW_START_FLOOR_RPS)
            return
        # Additive increase, capped at the advertised limit when there is one.
        step = max(0.05, 0.01 * self.rate)
        self.rate = (
            self.rate + step if self.ceiling is None else min(self.ceiling, self.rate + step)
        )

    def on_tokens(
        self,
        limit_per_minute: float | None,
        remaining: float | None,
        reset_s: float | None,
        estimated: float,
        actual: float | None,
    ) -> None:
        """Learn from a response's token headers and the tokens it really used (any of the
        header values may be None: then only requests are paced)."""
        if limit_per_minute:
            self.token_rate = self.headroom * limit_per_minute / 60.0
        if not self.token_rate:
            return
        if self.ceiling is None:
            # No request limit advertised: let the request pace run a little ahead of what
            # the token budget allows, so that tokens bind.
            self.rate = 1.2 * self.token_rate / max(actual or estimated, 1.0)
        if actual is not None:  # charge the estimate's error to the token clock
            self._next_token_slot += (actual - estimated) / self.token_rate
        if remaining is not None and remaining <= 0 and reset_s:
            # The budget is spent (e.g. by another client): wait until enough is back.
            self.pause(min(reset_s, max(estimated, 1.0) / self.token_rate))

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """A 429: slow down and pause everyone until the server's Retry-After."""
        self.n_rate_limited += 1
        now = time.monotonic()
        # Requests in flight together get their 429s together: slow down once per burst.
        if now - self._last_decrease > 1.0:
            self.rate = max(self.min_rps, self.rate * 0.7)
            self._last_decrease = now
        self.pause(retry_after_s if retry_after_s is not None else 1.0)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
