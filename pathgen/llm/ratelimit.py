"""Requests-per-minute and tokens-per-minute limits that hold in every window *at the server*.

A token bucket that starts full lets ``2 * limit - 1`` requests through in some
60 s window (a full burst at the end of one refill period plus the refill). Here each
limit is a sliding-window log, and a call's units stay in the window from the moment
it is admitted until ``window`` seconds after its answer came back (or it failed):
the request reached the server somewhere in between, so however long it waited in
the client (a busy CPU, a slow connection), no server-side window of that length,
wherever it starts, ever holds more than the limit. Every :meth:`RateLimiter.acquire`
must be followed by :meth:`Reservation.release` (use ``async with``).

Example::

    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=200_000)
    async with await limiter.acquire(estimate_tokens(request)) as reservation:
        result = await client.complete(request)
        reservation.settle(result.input_tokens + result.output_tokens)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

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
    units: int
    #: When the call ended (its answer came back); ``None`` while in flight.
    ended: float | None = None
    #: Whether the units still count (False once expired).
    live: bool = True


class SlidingWindowLimit:
    """At most ``limit`` units in any window of ``window_s`` seconds at the server.

    Units count from admission until ``window_s`` after :meth:`release`. Waiters are
    served in arrival order. A single request larger than ``limit`` is admitted alone
    once nothing else counts (it could never fit otherwise).
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._ended: deque[_Entry] = deque()  # released entries, in release order
        self._entries = 0  # entries that still count (in flight or ended in the window)
        self._total = 0  # their units
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._ended and self._ended[0].ended <= horizon:  # type: ignore[operator]
            entry = self._ended.popleft()
            entry.live = False
            self._entries -= 1
            self._total -= entry.units

    @property
    def in_window(self) -> int:
        """Units that count now (calls in flight, and calls ended within the window)."""
        self._expire(self._clock())
        return self._total

    async def acquire(self, units: int = 1) -> _Entry:
        """Wait until ``units`` fit, then count them (until ``window_s`` after release)."""
        async with self._lock:
            while True:
                now = self._clock()
                self._expire(now)
                if not self._entries or self._total + units <= self.limit:
                    entry = _Entry(units)
                    self._entries += 1
                    self._total += units
                    return entry
                self._released.clear()
                await self._wait_for_room(units, now)

    async def _wait_for_room(self, units: int, now: float) -> None:
        """Sleep until enough ended calls leave the window, or until a call ends."""
        need = self._total + units - self.limit
        until: float | None = None
        for entry in self._ended:  # earliest time enough units have expired
            need -= entry.units
            if need <= 0:
                until = entry.ended
                break
        released = asyncio.ensure_future(self._released.wait())
        waits: set[asyncio.Future[object]] = {released}
        if until is not None:
            delay = max(0.0, until + self.window_s - now) + 1e-6  # past rounding
            waits.add(asyncio.ensure_future(self._sleep(delay)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            for waiter in waits:
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    def release(self, entry: _Entry) -> None:
        """The call ended: its units leave the window ``window_s`` from now. Idempotent."""
        if entry.ended is not None:
            return
        entry.ended = self._clock()
        self._ended.append(entry)
        self._released.set()

    def correct(self, entry: _Entry, units: int) -> None:
        """Replace an admitted estimate by the actual count (if it still counts)."""
        if entry.live:
            self._total += units - entry.units
        entry.units = units


class Reservation:
    """What one call took from a :class:`RateLimiter`: settle it with the real usage, and
    release it when the call has ended (``async with`` does)."""

    def __init__(self, limiter: RateLimiter, tokens: _Entry | None, request: _Entry | None) -> None:
        self._limiter = limiter
        self._tokens = tokens
        self._request = request

    def settle(self, actual_tokens: int) -> None:
        """Correct the token estimate by the usage the provider reported."""
        if self._tokens is not None and self._limiter.tokens is not None:
            self._limiter.tokens.correct(self._tokens, actual_tokens)

    def release(self) -> None:
        """The call ended (answered, failed or cancelled)."""
        if self._tokens is not None and self._limiter.tokens is not None:
            self._limiter.tokens.release(self._tokens)
        if self._request is not None and self._limiter.requests is not None:
            self._limiter.requests.release(self._request)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class RateLimiter:
    """Per-provider RPM and TPM limits (either may be ``None``: unlimited)."""

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        window_s: float = 60.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.requests = (
            SlidingWindowLimit(requests_per_minute, window_s, clock=clock, sleep=sleep)
            if requests_per_minute
            else None
        )
        self.tokens = (
            SlidingWindowLimit(tokens_per_minute, window_s, clock=clock, sleep=sleep)
            if tokens_per_minute
            else None
        )

    async def acquire(self, estimated_tokens: int) -> Reservation:
        """Wait for a request slot and for ``estimated_tokens`` of token budget."""
        tokens = None
        if self.tokens is not None:
            tokens = await self.tokens.acquire(estimated_tokens)
        try:
            request = await self.requests.acquire(1) if self.requests is not None else None
        except BaseException:  # cancelled while waiting: give the tokens back
            if tokens is not None and self.tokens is not None:
                self.tokens.release(tokens)
            raise
        return Reservation(self, tokens, request)
