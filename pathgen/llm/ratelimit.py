"""Requests-per-minute and tokens-per-minute limits that hold in every sliding window.

A token bucket that starts full lets ``2 * limit - 1`` requests through in some
60 s window (a full burst at the end of one refill period plus the refill). Here each
limit is a sliding-window log: a unit is admitted at time ``t`` only if the units
admitted in ``(t - window, t]`` stay within the limit, so no window of that length,
wherever it starts, ever holds more. ``margin_s`` widens the window a little so
network jitter between admission and arrival at the server cannot squeeze two
admissions ``window`` apart into one server-side window.

Example::

    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=200_000)
    reservation = await limiter.acquire(estimate_tokens(request))
    result = await client.complete(request)
    reservation.settle(result.input_tokens + result.output_tokens)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pathgen.llm.base import ChatRequest

#: Conservative token cost of one image (a 672 px tile in OpenAI's high-detail tiling).
IMAGE_TOKENS = 765

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def estimate_tokens(request: ChatRequest, image_tokens: int = IMAGE_TOKENS) -> int:
    """Tokens a call may consume before it is made: text/4 + images + ``max_tokens``."""
    chars = sum(len(m.text) for m in request.messages)
    images = sum(len(m.images) for m in request.messages)
    return chars // 4 + image_tokens * images + request.max_tokens


@dataclass(eq=False)
class _Entry:
    t: float
    units: int
    live: bool = True


class SlidingWindowLimit:
    """At most ``limit`` units admitted in any window of ``window_s`` seconds.

    Waiters are served in arrival order. A single request larger than ``limit`` is
    admitted alone once the window is empty (it could never fit otherwise).
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        margin_s: float = 0.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.window_s = window_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._log: deque[_Entry] = deque()
        self._total = 0
        self._lock = asyncio.Lock()

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._log and self._log[0].t <= horizon:
            entry = self._log.popleft()
            entry.live = False
            self._total -= entry.units

    @property
    def in_window(self) -> int:
        """Units admitted in the current window."""
        self._expire(self._clock())
        return self._total

    async def acquire(self, units: int = 1) -> _Entry:
        """Wait until ``units`` fit in the window, then record them."""
        async with self._lock:
            while True:
                now = self._clock()
                self._expire(now)
                if not self._log or self._total + units <= self.limit:
                    entry = _Entry(now, units)
                    self._log.append(entry)
                    self._total += units
                    return entry
                need = self._total + units - self.limit
                wait_until = self._log[0].t
                for item in self._log:  # earliest time enough units have expired
                    wait_until = item.t
                    need -= item.units
                    if need <= 0:
                        break
                await self._sleep(max(0.0, wait_until + self.window_s - now) + 1e-6)

    def correct(self, entry: _Entry, units: int) -> None:
        """Replace an admitted estimate by the actual count (if still in the window)."""
        if entry.live:
            self._total += units - entry.units
        entry.units = units


class Reservation:
    """What one call took from a :class:`RateLimiter`; settle it with the real usage."""

    def __init__(self, limiter: RateLimiter, tokens: _Entry | None) -> None:
        self._limiter = limiter
        self._tokens = tokens

    def settle(self, actual_tokens: int) -> None:
        """Correct the token estimate by the usage the provider reported."""
        if self._tokens is not None and self._limiter.tokens is not None:
            self._limiter.tokens.correct(self._tokens, actual_tokens)


class RateLimiter:
    """Per-provider RPM and TPM limits (either may be ``None``: unlimited)."""

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        window_s: float = 60.0,
        margin_s: float = 0.25,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.requests = (
            SlidingWindowLimit(
                requests_per_minute, window_s, margin_s=margin_s, clock=clock, sleep=sleep
            )
            if requests_per_minute
            else None
        )
        self.tokens = (
            SlidingWindowLimit(
                tokens_per_minute, window_s, margin_s=margin_s, clock=clock, sleep=sleep
            )
            if tokens_per_minute
            else None
        )

    async def acquire(self, estimated_tokens: int) -> Reservation:
        """Wait for a request slot and for ``estimated_tokens`` of token budget."""
        entry = None
        if self.tokens is not None:
            entry = await self.tokens.acquire(estimated_tokens)
        if self.requests is not None:
            await self.requests.acquire(1)
        return Reservation(self, entry)
