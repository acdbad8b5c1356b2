"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, TGI, LM Studio).

Uses the official ``openai`` SDK with its aiohttp backend. To keep client CPU low
(measured on 2 cores at 256 in flight: ``chat.completions.create`` 2.1 ms/request,
``with_raw_response`` 2.1 ms, the SDK's low-level ``post`` with a raw response 0.8 ms)
the request goes through ``AsyncOpenAI.post(..., cast_to=httpx2.Response)``: the SDK
still builds, authenticates and sends the request and maps HTTP errors, but skips
request-parameter transformation and pydantic response models; we parse the JSON.
SDK retries are off (``max_retries=0``): :mod:`pathgen.llm.resilient` retries.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx2
import openai

from pathgen.errors import ProviderError
from pathgen.llm.base import ChatRequest, ChatResult
from pathgen.llm.completions import (
    error_for_status,
    messages_json,
    openai_image,
    result_from_payload,
    transport_error,
)
from pathgen.llm.credentials import api_key, key_env
from pathgen.llm.http import pooled_http_client


class OpenAIClient:
    """One ``AsyncOpenAI`` (one connection pool) per provider configuration.

    Example::

        client = OpenAIClient(model="gpt-4o-mini", base_url="http://localhost:8000/v1")
        result = await client.complete(request)
    """

    provider = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_connections: int = 64,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key_env = key_env(api_key_env, self.provider)
        key = api_key(self.api_key_env, provider=self.provider)
        self._http = pooled_http_client(timeout_s, max_connections)
        timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self._sdk = openai.AsyncOpenAI(
            api_key=key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=self._http,
        )

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (images as base64 JPEG data URLs)."""
        return {
            "model": request.model or self.model,
            "messages": messages_json(request, openai_image),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One chat completion; raises only :class:`pathgen.errors.LLMError`."""
        body = self.payload(request)
        start = time.perf_counter()
        try:
            response = await self._sdk.post("/chat/completions", body=body, cast_to=httpx2.Response)
        except openai.APIStatusError as exc:
            raise error_for_status(
                exc.status_code,
                exc.response.headers,
                exc.response.text,
                provider=self.provider,
                api_key_env=self.api_key_env,
                base_url=self.base_url,
                model=body["model"],
            ) from None
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise transport_error(self.provider, exc, self.base_url) from None
        latency = time.perf_counter() - start
        try:
            data = json.loads(response.content)
        except ValueError:
            raise ProviderError(f"{self.provider}: malformed response (invalid JSON)") from None
        return result_from_payload(
            data, provider=self.provider, model=body["model"], latency_s=latency
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._sdk.close()
