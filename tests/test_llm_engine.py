"""The request engine: N in flight, results delivered as they arrive, failures isolated."""

from __future__ import annotations

import time

import pytest

from pathgen.errors import LLMError, ProviderError
from pathgen.llm.base import ChatRequest, ChatResult, Message
from pathgen.llm.engine import call_cost, result_cost, run_requests
from pathgen.llm.openai_client import OpenAIClient
from pathgen.llm.resilient import BackoffWait, ResilientClient
from pathgen.settings import StageSettings
from pathgen.testing.llm_server import expected_content, run_mock_server


class CountingClient:
    """Wraps a real client and records how many calls overlap."""

    def __init__(self, inner: ResilientClient) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, request: ChatRequest) -> ChatResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.inner.complete(request)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


def _build(text: str) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), model="m", max_tokens=32)


def _client(base_url: str) -> CountingClient:
    inner = ResilientClient(
        OpenAIClient(model="m", base_url=base_url),
        max_attempts=2,
        max_concurrency=64,
        backoff=BackoffWait(base_s=0.01, max_s=0.02),
    )
    return CountingClient(inner)


async def test_keeps_n_in_flight_and_delivers_each_result_as_it_arrives() -> None:
    items = ["slow [[delay:0.8]]"] + [f"fast {i}" for i in range(40)]
    delivered: list[tuple[str, float]] = []
    with run_mock_server(latency=0.05) as srv:
        client = _client(srv.base_url)

        async def on_result(item: str, result: ChatResult) -> None:
            assert result.text == expected_content(item)
            delivered.append((item, time.monotonic()))

        async def on_error(item: str, err: LLMError) -> None:
            raise AssertionError(f"{item}: {err}")

        try:
            stats = await run_requests(
                items, _build, client, on_result=on_result, on_error=on_error, max_in_flight=6
            )
        finally:
            await client.aclose()
    assert client.max_in_flight == 6
    assert stats.max_in_flight_seen == 6
    assert stats.completed == 41 and stats.failed == 0
    order = [item for item, _ in delivered]
    assert sorted(order) == sorted(items)
    # The slow first item did not hold back the others: they were delivered before it.
    assert order.index("slow [[delay:0.8]]") > 20


async def test_failures_go_to_on_error_and_the_run_continues() -> None:
    items = [f"item {i}" + (" [[fault:400]]" if i % 5 == 0 else "") for i in range(20)]
    results: dict[str, str] = {}
    errors: dict[str, LLMError] = {}
    with run_mock_server(latency=0.01) as srv:
        client = _client(srv.base_url)

        async def on_result(item: str, result: ChatResult) -> None:
            results[item] = result.text

        async def on_error(item: str, err: LLMError) -> None:
            errors[item] = err

        try:
            stats = await run_requests(
                iter(items), _build, client, on_result=on_result, on_error=on_error, max_in_flight=4
            )
        finally:
            await client.aclose()
    assert stats.completed == 16 and stats.failed == 4
    assert sorted(errors) == sorted(i for i in items if "fault" in i)
    assert all(isinstance(e, ProviderError) and not e.retryable for e in errors.values())
    assert results == {i: expected_content(i) for i in items if "fault" not in i}


async def test_callback_failure_stops_the_run_but_keeps_delivered_results() -> None:
    persisted: list[str] = []

    async def items():
        for i in range(30):
            yield f"row {i}"

    with run_mock_server(latency=0.01) as srv:
        client = _client(srv.base_url)

        async def on_result(item: str, result: ChatResult) -> None:
            if len(persisted) == 10:
                raise RuntimeError("database is gone")
            persisted.append(item)

        async def on_error(item: str, err: LLMError) -> None:
            raise AssertionError(str(err))

        try:
            with pytest.raises(ExceptionGroup) as info:
                await run_requests(
                    items(), _build, client, on_result=on_result, on_error=on_error, max_in_flight=3
                )
        finally:
            await client.aclose()
        sent = srv.count()
    assert info.group_contains(RuntimeError, match="database is gone")
    assert len(persisted) == 10 and len(set(persisted)) == 10
    assert sent < 30  # the run stopped instead of draining every item


async def test_async_build_request_errors_are_reported() -> None:
    async def build(item: int) -> ChatRequest:
        if item == 2:
            raise ProviderError("cannot read tile 2", retryable=False)
        return _build(f"tile {item}")

    failed: list[int] = []
    done: list[int] = []
    with run_mock_server() as srv:
        client = _client(srv.base_url)

        async def on_result(item: int, result: ChatResult) -> None:
            done.append(item)

        async def on_error(item: int, err: LLMError) -> None:
            failed.append(item)

        try:
            await run_requests(
                range(5), build, client, on_result=on_result, on_error=on_error, max_in_flight=2
            )
        finally:
            await client.aclose()
    assert failed == [2] and sorted(done) == [0, 1, 3, 4]


def test_cost_per_call() -> None:
    assert call_cost(2000, 500, 0.01, 0.03) == pytest.approx(0.02 + 0.015)
    stage = StageSettings(price_input_per_1k=0.5, price_output_per_1k=1.5)
    result = ChatResult(text="x", model="m", provider="p", input_tokens=1000, output_tokens=100)
    assert result_cost(result, stage) == pytest.approx(0.5 + 0.15)
