"""Provider adapters driven by the official SDKs against a real local HTTP server."""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import Iterator

import pytest
from PIL import Image

from pathgen.errors import BadOutput, ConfigError, LLMError, ProviderError
from pathgen.llm.base import ChatRequest, LLMClient, Message
from pathgen.llm.completions import Refused, parse_retry_after
from pathgen.llm.factory import make_client
from pathgen.llm.images import encode_image
from pathgen.llm.mistral_client import MistralClient
from pathgen.llm.openai_client import OpenAIClient
from pathgen.llm.resilient import BackoffWait, ResilientClient
from pathgen.settings import StageSettings
from pathgen.testing.llm_server import MockServer, expected_content, run_mock_server

PROVIDERS = ["openai", "mistral"]


@pytest.fixture
def server() -> Iterator[MockServer]:
    with run_mock_server(latency=0.005) as srv:
        yield srv


def _client(
    provider: str, srv: MockServer, *, timeout_s: float = 5.0, attempts: int = 3, **kw
) -> ResilientClient:
    cls = OpenAIClient if provider == "openai" else MistralClient
    kw.setdefault("api_key_env", "")  # the mock server needs no key
    inner = cls(model="mock-vlm", base_url=srv.base_url, timeout_s=timeout_s, **kw)
    return ResilientClient(
        inner,
        max_attempts=attempts,
        timeout_s=timeout_s,
        backoff=BackoffWait(base_s=0.01, max_s=0.05),
    )


def _request(text: str, *images) -> ChatRequest:
    return ChatRequest(
        messages=(Message("system", "You are a pathologist."), Message("user", text, images)),
        model="mock-vlm",
        max_tokens=64,
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_answer_maps_to_its_request(provider: str, server: MockServer) -> None:
    client = _client(provider, server)
    try:
        for i in range(3):
            result = await client.complete(_request(f"tile {i}"))
            assert result.text == expected_content(f"tile {i}")
            assert result.provider == provider
            assert result.attempts == 1
            assert result.input_tokens > 0 and result.output_tokens > 0
            assert result.finish_reason == "stop"
    finally:
        await client.aclose()
    bodies = [r.body for r in server.requests()]
    assert [b["messages"][1]["content"] for b in bodies] == ["tile 0", "tile 1", "tile 2"]
    assert all(b["model"] == "mock-vlm" and b["max_tokens"] == 64 for b in bodies)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_429_waits_at_least_retry_after(provider: str, server: MockServer) -> None:
    client = _client(provider, server)
    try:
        result = await client.complete(_request("busy [[fault:429:0.4*1]]"))
    finally:
        await client.aclose()
    assert result.attempts == 2
    first, second = server.requests(bodies=False)
    assert second.t - first.t >= 0.4


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_500_is_retried_then_succeeds(provider: str, server: MockServer) -> None:
    client = _client(provider, server, attempts=4)
    try:
        result = await client.complete(_request("flaky [[fault:500*2]]"))
    finally:
        await client.aclose()
    assert result.attempts == 3
    assert result.text == expected_content("flaky [[fault:500*2]]")
    assert server.count() == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_hang_times_out_on_every_attempt(provider: str, server: MockServer) -> None:
    client = _client(provider, server, timeout_s=0.3, attempts=2)
    try:
        with pytest.raises(ProviderError, match="timeout") as info:
            await client.complete(_request("stuck [[fault:hang]]"))
    finally:
        await client.aclose()
    assert info.value.retryable
    assert info.value.attempts == 2  # type: ignore[attr-defined]
    assert server.count() == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_json_is_retried(provider: str, server: MockServer) -> None:
    client = _client(provider, server)
    try:
        result = await client.complete(_request("garbled [[fault:malformed*1]]"))
        with pytest.raises(ProviderError, match="malformed response") as info:
            await client.complete(_request("always garbled [[fault:malformed]]"))
    finally:
        await client.aclose()
    assert result.attempts == 2
    assert info.value.attempts == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_empty_content_is_bad_output_and_retried(provider: str, server: MockServer) -> None:
    client = _client(provider, server)
    try:
        result = await client.complete(_request("mute [[fault:empty*1]]"))
        with pytest.raises(BadOutput, match="empty content") as info:
            await client.complete(_request("always mute [[fault:empty]]"))
    finally:
        await client.aclose()
    assert result.attempts == 2
    assert info.value.attempts == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refusal_is_not_retried(provider: str, server: MockServer) -> None:
    client = _client(provider, server)
    try:
        with pytest.raises(Refused, match="refused"):
            await client.complete(_request("forbidden [[fault:refusal]]"))
    finally:
        await client.aclose()
    assert server.count() == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_reasoning_is_never_part_of_the_answer(provider: str, server: MockServer) -> None:
    client = _client(provider, server)
    try:
        result = await client.complete(_request("caption [[fault:think]]"))
        with pytest.raises(BadOutput, match="all reasoning; raise max_tokens") as info:
            await client.complete(_request("ponder [[fault:overthink]]"))
    finally:
        await client.aclose()
    assert result.text == expected_content("caption [[fault:think]]")
    assert "<think>" in (info.value.raw or "")  # kept for the failed revision


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_answer_cut_at_max_tokens_reports_length(provider: str, server: MockServer) -> None:
    client = _client(provider, server)
    try:
        result = await client.complete(_request("long [[fault:length]]"))
    finally:
        await client.aclose()
    assert result.finish_reason == "length"
    assert expected_content("long [[fault:length]]").startswith(result.text)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_server_down_is_a_retried_connection_error(provider: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cls = OpenAIClient if provider == "openai" else MistralClient
    inner = cls(model="m", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2.0, api_key_env="")
    client = ResilientClient(inner, max_attempts=2, timeout_s=2.0, backoff=BackoffWait(0.01, 0.02))
    try:
        with pytest.raises(ProviderError, match="connection refused") as info:
            await client.complete(_request("anyone there?"))
    finally:
        await client.aclose()
    assert info.value.retryable
    assert info.value.attempts == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_401_names_the_variable_not_the_key(
    provider: str, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATHGEN_TEST_KEY", "sk-secret-123")
    client = _client(provider, server, api_key_env="PATHGEN_TEST_KEY")
    try:
        with pytest.raises(ProviderError) as info:
            await client.complete(_request("who am I [[fault:401]]"))
    finally:
        await client.aclose()
    assert not info.value.retryable
    assert "$PATHGEN_TEST_KEY" in str(info.value)
    assert "sk-secret-123" not in str(info.value)
    (seen,) = server.requests()
    assert seen.headers["authorization"] == "Bearer sk-secret-123"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_key_for_hosted_api_names_the_variable(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATHGEN_NO_SUCH_KEY", raising=False)
    stage = StageSettings(provider=provider, model="m", api_key_env="PATHGEN_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="PATHGEN_NO_SUCH_KEY"):
        make_client(stage)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_images_arrive_as_jpeg_data_urls_at_max_side(
    provider: str, server: MockServer
) -> None:
    tile = Image.new("RGB", (1000, 800), (200, 120, 180))
    part = encode_image(tile, max_side=336)
    client = _client(provider, server)
    try:
        result = await client.complete(_request("describe", part, part))
    finally:
        await client.aclose()
    assert result.text == expected_content("describe", n_images=2)
    content = server.requests()[0].body["messages"][1]["content"]
    assert content[0] == {"type": "text", "text": "describe"}
    urls = [c["image_url"] for c in content[1:]]
    if provider == "openai":
        urls = [u["url"] for u in urls]
    assert len(urls) == 2
    for url in urls:
        prefix = "data:image/jpeg;base64,"
        assert url.startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
        assert image.format == "JPEG"
        assert image.size == (336, 269)


def test_encode_image_keeps_small_jpeg_and_rejects_garbage() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (100, 50)).save(buf, format="PNG")
    part = encode_image(buf.getvalue(), max_side=64)
    assert Image.open(io.BytesIO(part.jpeg)).size == (64, 32)
    assert encode_image(part.jpeg, max_side=64).jpeg == part.jpeg
    with pytest.raises(LLMError, match="cannot encode"):
        encode_image(b"not an image", max_side=64)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_factory_builds_a_resilient_client(provider: str, server: MockServer) -> None:
    stage = StageSettings(
        provider=provider,
        model="mock-vlm",
        base_url=server.base_url,
        api_key_env="",
        max_attempts=2,
        timeout_s=5,
    )
    client = make_client(stage)
    try:
        assert isinstance(client, ResilientClient) and isinstance(client, LLMClient)
        result = await client.complete(_request("via factory"))
        assert result.text == expected_content("via factory")
    finally:
        await client.aclose()
