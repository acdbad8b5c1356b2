"""OpenAI's Batch API through the official SDK: upload a JSONL file, create a batch,
poll it, download its output and error files, cancel it.

A batch is found again by its ``metadata`` (``find``), so a process killed between
creating a batch and recording its id never creates a second one for the same items.

Example::

    api = OpenAIBatches(base_url=None, api_key_env="OPENAI_API_KEY")
    file_id = await api.upload(b"...jsonl...", "describe.jsonl")
    state = await api.create(file_id, {"pathgen_batch": "b-1"})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai

from pathgen.llm.base import ChatRequest
from pathgen.llm.completions import error_for_status, messages_json, openai_image, transport_error
from pathgen.llm.credentials import api_key, key_env

#: The Batch API's limits per batch: requests and input file size.
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
#: Statuses after which a batch changes no more.
FINAL = frozenset({"completed", "expired", "cancelled", "failed"})


@dataclass(frozen=True)
class BatchState:
    """A provider batch as last seen."""

    id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL


def _state(batch: Any) -> BatchState:
    return BatchState(batch.id, batch.status, batch.output_file_id, batch.error_file_id)


class OpenAIBatches:
    provider = "openai"

    def __init__(
        self, *, base_url: str | None, api_key_env: str | None, timeout_s: float = 120.0
    ) -> None:
        self.base_url = base_url
        self.api_key_env = key_env(api_key_env, self.provider)
        self._sdk = openai.AsyncOpenAI(
            api_key=api_key(self.api_key_env, provider=self.provider),
            base_url=base_url,
            max_retries=2,
            timeout=timeout_s,
        )

    @staticmethod
    def line(custom_id: str, request: ChatRequest) -> dict[str, Any]:
        """One input line in OpenAI's batch format (images as inline data URLs)."""
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": request.model,
                "messages": messages_json(request, openai_image),
                "temperature": request.temperature,
                "max_tokens": request.max_tokens,
            },
        }

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except openai.APIStatusError as exc:
            raise error_for_status(
                exc.status_code,
                exc.response.headers,
                exc.response.text,
                provider=self.provider,
                api_key_env=self.api_key_env,
            ) from None
        except openai.APIConnectionError as exc:
            raise transport_error(self.provider, exc, self.base_url) from None

    async def upload(self, content: bytes, name: str) -> str:
        """Upload a batch input file; returns its file id."""
        f = await self._call(self._sdk.files.create(file=(name, content), purpose="batch"))
        return str(f.id)

    async def create(self, file_id: str, metadata: dict[str, str]) -> BatchState:
        """Start a batch of chat completions over an uploaded file."""
        batch = await self._call(
            self._sdk.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata=metadata,
            )
        )
        return _state(batch)

    async def find(self, key: str, value: str) -> BatchState | None:
        """The batch created with ``metadata[key] == value``, if any."""
        page = await self._call(self._sdk.batches.list(limit=100))
        async for batch in page:
            if (batch.metadata or {}).get(key) == value:
                return _state(batch)
        return None

    async def retrieve(self, batch_id: str) -> BatchState:
        return _state(await self._call(self._sdk.batches.retrieve(batch_id)))

    async def content(self, file_id: str) -> bytes:
        """A file's bytes (a batch's output or error file)."""
        response = await self._call(self._sdk.files.content(file_id))
        return bytes(response.content)

    async def cancel(self, batch_id: str) -> BatchState:
        return _state(await self._call(self._sdk.batches.cancel(batch_id)))

    async def aclose(self) -> None:
        await self._sdk.close()
