"""Keep up to N requests in flight and hand over each result the moment it arrives.

A fixed set of ``2 * max_in_flight`` worker coroutines pulls items from a bounded
queue fed by one feeder task; a semaphore lets ``max_in_flight`` of them call the
provider at once. So there is no batch barrier, a slot is refilled the moment a call
returns (while its result is still being persisted), and at most ``3 * max_in_flight``
items are in memory however many there are. Each result goes to ``on_result`` as soon
as it completes (persist it there); each final failure goes to ``on_error`` and the
run goes on. An exception raised by a callback stops the
run (a database failure must not be swallowed).

Example::

    stats = await run_requests(tiles, build_request, client, on_result=save, on_error=record,
                               max_in_flight=256)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from pathgen.errors import LLMError
from pathgen.llm.base import ChatRequest, ChatResult, LLMClient
from pathgen.settings import StageSettings

T = TypeVar("T")

_DONE = object()


def call_cost(
    input_tokens: int, output_tokens: int, price_input_per_1k: float, price_output_per_1k: float
) -> float:
    """Cost of one call: ``in/1000 * price_in + out/1000 * price_out``."""
    return input_tokens / 1000 * price_input_per_1k + output_tokens / 1000 * price_output_per_1k


def result_cost(result: ChatResult, stage: StageSettings) -> float:
    """Cost of ``result`` at the stage's configured prices."""
    return call_cost(
        result.input_tokens,
        result.output_tokens,
        stage.price_input_per_1k,
        stage.price_output_per_1k,
    )


@dataclass
class EngineStats:
    """What a run did."""

    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    elapsed_s: float = 0.0
    max_in_flight_seen: int = 0


async def _feed(items: AsyncIterable[T] | Iterable[T], queue: asyncio.Queue[object], workers: int):
    if isinstance(items, AsyncIterable):
        async for item in items:
            await queue.put(item)
    else:
        for item in items:
            await queue.put(item)
    for _ in range(workers):
        await queue.put(_DONE)


async def run_requests(
    items: AsyncIterable[T] | Iterable[T],
    build_request: Callable[[T], ChatRequest | Awaitable[ChatRequest]],
    client: LLMClient,
    *,
    on_result: Callable[[T, ChatResult], Awaitable[None]],
    on_error: Callable[[T, LLMError], Awaitable[None]],
    max_in_flight: int = 16,
) -> EngineStats:
    """Complete one request per item with up to ``max_in_flight`` calls at a time.

    ``build_request`` may be sync or async; an :class:`LLMError` it raises is reported
    to ``on_error`` like a failed call.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    stats = EngineStats()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max_in_flight)
    calls = asyncio.Semaphore(max_in_flight)
    workers = 2 * max_in_flight  # half may be persisting results while N calls run
    in_flight = 0
    start = time.perf_counter()

    async def call(item: T) -> ChatResult:
        nonlocal in_flight
        request = build_request(item)
        if inspect.isawaitable(request):
            request = await request
        async with calls:
            in_flight += 1
            stats.max_in_flight_seen = max(stats.max_in_flight_seen, in_flight)
            try:
                return await client.complete(request)  # type: ignore[arg-type]
            finally:
                in_flight -= 1

    async def worker() -> None:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            try:
                result = await call(item)  # type: ignore[arg-type]
            except LLMError as err:
                stats.failed += 1
                await on_error(item, err)  # type: ignore[arg-type]
                continue
            stats.completed += 1
            stats.input_tokens += result.input_tokens
            stats.output_tokens += result.output_tokens
            await on_result(item, result)  # type: ignore[arg-type]

    async with asyncio.TaskGroup() as group:
        group.create_task(_feed(items, queue, workers), name="llm-feed")
        for i in range(workers):
            group.create_task(worker(), name=f"llm-worker-{i}")
    stats.elapsed_s = time.perf_counter() - start
    return stats
