"""RPM/TPM limits: no sliding window at the server ever exceeds the limit, however long
requests take to leave the client; usage corrects estimates."""

from __future__ import annotations

import asyncio
import bisect
import random

from pathgen.llm.base import ChatRequest, ImagePart, Message
from pathgen.llm.openai_client import OpenAIClient
from pathgen.llm.ratelimit import IMAGE_TOKENS, RateLimiter, SlidingWindowLimit, estimate_tokens
from pathgen.llm.resilient import ResilientClient
from pathgen.testing.llm_server import run_mock_server


class VirtualClock:
    """Time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def max_in_window(times: list[float], window: float) -> int:
    """Largest number of events inside any half-open window [t, t + window)."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


async def test_rpm_never_exceeded_in_any_window_virtual_clock() -> None:
    clock = VirtualClock()
    limit = SlidingWindowLimit(10, 60.0, clock=clock, sleep=clock.sleep)
    rng = random.Random(7)
    admitted: list[float] = []
    for _ in range(200):  # bursts and pauses of random length
        if rng.random() < 0.2:
            await clock.sleep(rng.uniform(0, 45))
        limit.release(await limit.acquire())
        admitted.append(clock.now)
    assert max_in_window(admitted, 60.0) == 10
    assert len(admitted) == 200


async def test_burst_is_spread_over_windows_not_doubled() -> None:
    # A full token bucket would admit 10 at t=0 and 10 more within the same minute.
    clock = VirtualClock()
    limit = SlidingWindowLimit(10, 60.0, clock=clock, sleep=clock.sleep)
    admitted = []
    for _ in range(30):
        limit.release(await limit.acquire())
        admitted.append(clock.now)
    assert admitted[:10] == [0.0] * 10
    assert all(60.0 <= t < 60.1 for t in admitted[10:20])
    assert all(120.0 <= t < 120.1 for t in admitted[20:])
    assert max_in_window(admitted, 60.0) == 10


async def test_concurrent_waiters_never_exceed_limit() -> None:
    clock = VirtualClock()
    limit = SlidingWindowLimit(7, 10.0, clock=clock, sleep=clock.sleep)
    admitted: list[float] = []

    async def caller() -> None:
        limit.release(await limit.acquire())
        admitted.append(clock.now)

    async with asyncio.TaskGroup() as group:
        for _ in range(50):
            group.create_task(caller())
    assert len(admitted) == 50
    assert max_in_window(admitted, 10.0) == 7


async def test_token_limit_corrected_by_actual_usage() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(tokens_per_minute=1000, clock=clock, sleep=clock.sleep)
    first = await limiter.acquire(600)
    assert limiter.tokens is not None and limiter.tokens.in_window == 600
    first.settle(100)  # the call used far fewer tokens than estimated
    first.release()
    assert limiter.tokens.in_window == 100
    second = await limiter.acquire(600)
    assert clock.now == 0.0  # fits after the correction; would have waited without it
    second.release()
    third = await limiter.acquire(600)  # 700 + 600 > 1000: waits for the first window to pass
    assert clock.now >= 60.0
    third.release()


async def test_a_call_in_flight_keeps_its_slot_until_a_window_after_it_ends() -> None:
    """Where a request is still in the client (queued on a busy CPU), it may reach the
    server at any moment: its slot cannot be reused until a full window after it ends."""
    limit = SlidingWindowLimit(2, 0.2)
    first, second = await limit.acquire(), await limit.acquire()
    waiting = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0.5)  # far past the window since admission
    assert not waiting.done()
    loop = asyncio.get_running_loop()
    ended = loop.time()
    limit.release(first)
    third = await asyncio.wait_for(waiting, 5)
    assert loop.time() - ended >= 0.2
    limit.release(second)
    limit.release(third)
    limit.release(third)  # idempotent
    assert limit.in_window == 2
    await asyncio.sleep(0.25)
    assert limit.in_window == 0


async def test_a_cancelled_waiter_gives_its_tokens_back() -> None:
    limiter = RateLimiter(requests_per_minute=1, tokens_per_minute=1000)
    held = await limiter.acquire(100)
    waiter = asyncio.ensure_future(limiter.acquire(100))  # gets tokens, waits for a request
    await asyncio.sleep(0.05)
    assert limiter.tokens is not None and limiter.tokens.in_window == 200
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    held.release()
    assert limiter.tokens.in_window == 200  # both count for a window after they ended
    assert limiter.tokens._total == 200 and not any(  # noqa: SLF001
        e.ended is None
        for e in limiter.tokens._ended  # noqa: SLF001
    )


def test_estimate_counts_text_images_and_max_tokens() -> None:
    request = ChatRequest(
        messages=(Message("user", "x" * 400, (ImagePart(b"1"), ImagePart(b"2"))),),
        model="m",
        max_tokens=100,
    )
    assert estimate_tokens(request) == 100 + 2 * IMAGE_TOKENS + 100


async def _server_arrivals(client_cls: type[OpenAIClient], rpm: int, n: int, window: float):  # noqa: ANN202
    """Send ``n`` requests through a ``rpm``-per-``window`` limiter; the server's arrival times."""
    with run_mock_server(latency=0.01) as srv:
        limiter = RateLimiter(requests_per_minute=rpm, window_s=window)
        client = ResilientClient(
            client_cls(model="m", base_url=srv.base_url, api_key_env=""),
            max_concurrency=32,
            limiter=limiter,
        )
        request = ChatRequest(messages=(Message("user", "hi"),), model="m")
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(n):
                    group.create_task(client.complete(request))
        finally:
            await client.aclose()
        return [r.t for r in srv.requests(bodies=False)]


async def test_rpm_limit_holds_at_the_server() -> None:
    """Real client, real server, a short window: no server-side window exceeds the limit."""
    times = await _server_arrivals(OpenAIClient, rpm=4, n=14, window=0.6)
    assert len(times) == 14
    assert max_in_window(times, 0.6) == 4


async def test_tpm_settled_with_reported_usage() -> None:
    with run_mock_server() as srv:
        limiter = RateLimiter(tokens_per_minute=100_000)
        client = ResilientClient(
            OpenAIClient(model="m", base_url=srv.base_url, api_key_env=""), limiter=limiter
        )
        request = ChatRequest(messages=(Message("user", "hello there"),), model="m")
        try:
            result = await client.complete(request)
        finally:
            await client.aclose()
    assert limiter.tokens is not None
    assert limiter.tokens.in_window == result.input_tokens + result.output_tokens
    assert limiter.tokens.in_window < estimate_tokens(request)


class SlowToSend(OpenAIClient):
    """A client whose requests wait a random while before they leave (a busy CPU)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self._rng = random.Random(3)

    async def complete(self, request: ChatRequest):  # noqa: ANN201
        await asyncio.sleep(self._rng.uniform(0, 0.5))
        return await super().complete(request)


async def test_rpm_limit_holds_at_the_server_when_requests_are_slow_to_leave() -> None:
    """Admission time is not arrival time: requests held up to 0.5 s in the client must
    still never put more than the limit into any server-side window."""
    times = await _server_arrivals(SlowToSend, rpm=5, n=20, window=0.6)
    assert len(times) == 20
    assert max_in_window(times, 0.6) <= 5
