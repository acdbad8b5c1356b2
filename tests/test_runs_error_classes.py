"""Failures carry their class from where they are raised (issue 13, "Error classes").

Transient (429, 5xx, timeouts, connection errors) are retried; permanent ones are not;
a 401/403/404 pauses the stage for the run after ONE request, with one message naming
provider, base_url, model and status, and ``pathgen retry`` resumes it. A 429's
``retry-after-ms`` (OpenAI-compatible servers) or ``Retry-After`` sets the next attempt.
All against pathgen.testing's real HTTP server through the official SDKs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.errors import ProviderRejected, RateLimited
from pathgen.llm.base import ChatRequest, Message
from pathgen.llm.completions import error_for_status, retry_after_s
from pathgen.llm.mistral_client import MistralClient
from pathgen.llm.openai_client import OpenAIClient
from pathgen.llm.resilient import BackoffWait, ResilientClient
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import demo_template, item_count, pipeline_config


def _request(text: str) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), model="mock-vlm")


def _client(provider: str, base_url: str, **kw: object) -> ResilientClient:
    cls = OpenAIClient if provider == "openai" else MistralClient
    inner = cls(model="mock-vlm", base_url=base_url, api_key_env="")
    return ResilientClient(inner, backoff=BackoffWait(base_s=0.01), **kw)  # type: ignore[arg-type]


def test_retry_after_headers_ms_seconds_and_date() -> None:
    assert retry_after_s({"retry-after-ms": "700"}) == 0.7
    assert retry_after_s({"retry-after-ms": "700", "retry-after": "3"}) == 0.7
    assert retry_after_s({"retry-after": "3"}) == 3.0
    date = {"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}
    assert retry_after_s(date, now=1445412480.0) == 10.0
    assert retry_after_s({}) is None


def test_status_codes_map_to_classes() -> None:
    def err(status: int):  # noqa: ANN202
        return error_for_status(
            status, {}, "{}", provider="openai", api_key_env="K", base_url="http://h/v1", model="m"
        )

    for status in (429, 500, 502, 503, 408):
        assert err(status).transient and not err(status).pauses_stage
    for status in (400, 422):
        assert isinstance(err(status), ProviderRejected)
        assert not err(status).transient and not err(status).pauses_stage
    for status in (401, 403, 404):
        e = err(status)
        assert isinstance(e, ProviderRejected) and e.pauses_stage and not e.transient
        assert "http://h/v1" in str(e) and "'m'" in str(e) and f"HTTP {status}" in str(e)


@pytest.mark.parametrize("provider", ["openai", "mistral"])
async def test_retry_after_ms_sets_the_next_attempt(provider: str) -> None:
    with run_mock_server() as srv:
        client = _client(provider, srv.base_url)
        try:
            result = await client.complete(_request("hello [[fault:429ms:700*1]]"))
        finally:
            await client.aclose()
        times = [r.t for r in srv.requests(bodies=False)]
    assert result.attempts == 2 and len(times) == 2
    assert times[1] - times[0] >= 0.7


async def test_exhausted_rate_limit_reports_the_real_attempt_count() -> None:
    with run_mock_server() as srv:
        client = _client("openai", srv.base_url, max_attempts=3)
        try:
            with pytest.raises(RateLimited) as info:
                await client.complete(_request("hello [[fault:429:0]]"))
        finally:
            await client.aclose()
        assert info.value.attempts == 3 == srv.count()


@pytest.mark.parametrize("provider", ["openai", "mistral"])
async def test_a_404_costs_one_request_however_many_calls_wait(provider: str) -> None:
    with run_mock_server(latency=0.05, fault_plan=["404"] * 100) as srv:
        client = _client(provider, srv.base_url, max_concurrency=64)
        try:
            results = await asyncio.gather(
                *(client.complete(_request(f"tile {i}")) for i in range(40)),
                return_exceptions=True,
            )
        finally:
            await client.aclose()
        assert srv.count() == 1
    assert all(isinstance(r, ProviderRejected) and r.pauses_stage for r in results)
    assert sorted(r.attempts for r in results) == [0] * 39 + [1]  # type: ignore[union-attr]
    assert srv.base_url in str(results[0]) and "'mock-vlm'" in str(results[0])


async def test_a_transient_first_failure_does_not_block_the_stage() -> None:
    with run_mock_server(fault_plan=["500", "500"]) as srv:
        client = _client("openai", srv.base_url, max_attempts=2, max_concurrency=8)
        try:
            results = await asyncio.gather(
                *(client.complete(_request(f"tile {i}")) for i in range(6)),
                return_exceptions=True,
            )
        finally:
            await client.aclose()
    assert sum(isinstance(r, Exception) for r in results) == 1  # the probe ran out
    assert all(r.attempts == 1 for r in results if not isinstance(r, Exception))


@pytest.mark.slow
async def test_404_pauses_the_stage_exits_4_and_retry_resumes(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "demo")
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    runner = CliRunner()
    with run_mock_server(latency=0.01, fault_plan=["404"]) as srv:  # then the server answers
        body = f'provider = "openai"\nmodel = "mock-vlm"\nbase_url = "{srv.base_url}"\n'
        extra = f'[captioning.describe]\n{body}api_key_env = ""\n'
        config = pipeline_config(template, tmp_path / "w", db, extra)
        res = await asyncio.to_thread(runner.invoke, app, ["run", str(config)])
        assert srv.count() == 1, res.output  # one request, not one (or three) per item
        assert res.exit_code == 4, res.output
        paused = await item_count(db, "describe", ("paused",))
        assert paused > 0 and await item_count(db, "describe", ("failed", "done")) == 0
        why = f"stage paused: openai at {srv.base_url}, model 'mock-vlm': not found (HTTP 404)"
        assert res.output.count(f"describe: {paused} item(s) wait: {why}") == 1
        assert "mock fault 404" in res.output  # the server's own message
        assert "pathgen retry demo --stage describe" in res.output
        retried = await asyncio.to_thread(
            runner.invoke, app, ["-c", str(config), "retry", "demo", "--stage", "describe"]
        )
        assert retried.exit_code == 0 and f"requeued {paused} item(s)" in retried.output
        again = await asyncio.to_thread(runner.invoke, app, ["run", str(config)])
        assert again.exit_code == 0, again.output
        assert await item_count(db, "describe", ("done",)) == paused
        assert srv.count() == 1 + paused
