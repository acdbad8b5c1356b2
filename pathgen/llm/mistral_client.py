"""Mistral (incl. Pixtral for images) through the official ``mistralai`` SDK.

The SDK's async calls go through an ``httpx2.AsyncClient`` we pass in: the openai
SDK's aiohttp-backed client (``openai.DefaultAioHttpClient``), which measured 7.9 ms
CPU/request against 11.6 ms for the SDK's default httpx client at 256 in flight. Most of
the rest is the SDK itself: mistralai 3.7 builds a pydantic model class
(``pydantic.create_model``) in every ``marshal_json``/``unmarshal``, 8 per request, 10-15 ms
of CPU per call here against 1.0-1.4 ms for the ``openai`` SDK. SDK retries are off:
:mod:`pathgen.llm.resilient` retries.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
from mistralai.client import Mistral, errors

from pathgen.errors import ProviderError
from pathgen.llm.base import ChatRequest, ChatResult
from pathgen.llm.completions import (
    error_for_status,
    messages_json,
    mistral_image,
    result_from_payload,
    transport_error,
)
from pathgen.llm.credentials import api_key, key_env
from pathgen.llm.http import pooled_http_client


def _server_url(base_url: str | None) -> str | None:
    """The SDK appends ``/v1/...`` itself; accept base URLs given with or without it."""
    if base_url is None:
        return None
    url = base_url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _as_payload(response: Any) -> dict[str, Any]:
    """The fields we use, read off the SDK model (cheaper than ``model_dump``)."""
    choices = []
    for choice in response.choices or ():
        content = getattr(choice.message, "content", None)
        if isinstance(content, list):
            content = "".join(getattr(chunk, "text", "") for chunk in content)
        elif not isinstance(content, str):
            content = None  # UNSET / null
        choices.append({"message": {"content": content}, "finish_reason": choice.finish_reason})
    usage = response.usage
    return {
        "model": response.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": getattr(usage, "prompt_tokens", 0),
            "completion_tokens": getattr(usage, "completion_tokens", 0),
            # not a declared field of the SDK's UsageInfo: kept in its extra properties
            "prompt_tokens_details": (getattr(usage, "additional_properties", None) or {}).get(
                "prompt_tokens_details"
            ),
        },
    }


class MistralClient:
    """One ``Mistral`` SDK instance (one connection pool) per provider configuration.

    Example::

        client = MistralClient(model="pixtral-12b-2409")
        result = await client.complete(request)
    """

    provider = "mistral"

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
        self._timeout_ms = int(timeout_s * 1000)
        self._sdk = Mistral(
            api_key=key,
            server_url=_server_url(base_url),
            async_client=self._http,
            timeout_ms=self._timeout_ms,
        )

    def messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        """The ``messages`` array (images as ``image_url`` data-URL strings)."""
        return messages_json(request, mistral_image)

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One chat completion; raises only :class:`pathgen.errors.LLMError`."""
        model = request.model or self.model
        start = time.perf_counter()
        try:
            response = await self._sdk.chat.complete_async(
                model=model,
                messages=self.messages(request),  # type: ignore[arg-type]
                temperature=request.temperature,
                max_tokens=request.max_tokens,
                timeout_ms=self._timeout_ms,
            )
        except errors.ResponseValidationError:
            raise ProviderError(f"{self.provider}: malformed response (invalid JSON)") from None
        except errors.MistralError as exc:
            raise error_for_status(
                exc.status_code,
                exc.headers,
                exc.body,
                provider=self.provider,
                api_key_env=self.api_key_env,
                base_url=self.base_url,
                model=model,
            ) from None
        except (httpx2.TransportError, errors.NoResponseError) as exc:  # incl. timeouts
            raise transport_error(self.provider, exc, self.base_url) from None
        latency = time.perf_counter() - start
        return result_from_payload(
            _as_payload(response), provider=self.provider, model=model, latency_s=latency
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
