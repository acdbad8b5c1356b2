"""Mistral batch jobs through the official SDK: upload a JSONL file, create a job, poll
it, download its output and error files, cancel it.

Statuses are reported in OpenAI's words (``SUCCESS`` → ``completed``,
``TIMEOUT_EXCEEDED`` → ``expired``, …) so the batch driver treats both alike. A job is
found again by its ``metadata`` (``find``), as with OpenAI.

Example::

    api = MistralBatches(model="pixtral-12b-2409", base_url=None, api_key_env="MISTRAL_API_KEY")
    file_id = await api.upload(b"...jsonl...", "describe.jsonl")
"""

from __future__ import annotations

from typing import Any

import httpx2
from mistralai.client import Mistral, errors

from pathgen.llm.base import ChatRequest
from pathgen.llm.batch_openai import BatchState
from pathgen.llm.completions import error_for_status, messages_json, mistral_image, transport_error
from pathgen.llm.credentials import api_key, key_env
from pathgen.llm.mistral_client import _server_url

_STATUS = {
    "QUEUED": "validating",
    "RUNNING": "in_progress",
    "SUCCESS": "completed",
    "FAILED": "failed",
    "TIMEOUT_EXCEEDED": "expired",
    "CANCELLATION_REQUESTED": "cancelling",
    "CANCELLED": "cancelled",
}


def _state(job: Any) -> BatchState:
    status = _STATUS.get(str(job.status), str(job.status).lower())
    return BatchState(job.id, status, job.output_file or None, job.error_file or None)


class MistralBatches:
    provider = "mistral"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key_env: str | None,
        timeout_s: float = 120.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key_env = key_env(api_key_env, self.provider)
        self._sdk = Mistral(
            api_key=api_key(self.api_key_env, provider=self.provider),
            server_url=_server_url(base_url),
            timeout_ms=int(timeout_s * 1000),
        )

    @staticmethod
    def line(custom_id: str, request: ChatRequest) -> dict[str, Any]:
        """One input line: Mistral takes the model per job, images as bare data URLs."""
        return {
            "custom_id": custom_id,
            "body": {
                "messages": messages_json(request, mistral_image),
                "temperature": request.temperature,
                "max_tokens": request.max_tokens,
            },
        }

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except errors.MistralError as exc:
            raise error_for_status(
                exc.status_code,
                exc.headers,
                exc.body,
                provider=self.provider,
                api_key_env=self.api_key_env,
            ) from None
        except (httpx2.TransportError, errors.NoResponseError) as exc:
            raise transport_error(self.provider, exc, self.base_url) from None

    async def upload(self, content: bytes, name: str) -> str:
        f = await self._call(
            self._sdk.files.upload_async(
                file={"file_name": name, "content": content}, purpose="batch"
            )
        )
        return str(f.id)

    async def create(self, file_id: str, metadata: dict[str, str]) -> BatchState:
        job = await self._call(
            self._sdk.batch.jobs.create_async(
                input_files=[file_id],
                endpoint="/v1/chat/completions",
                model=self.model,
                metadata=metadata,
            )
        )
        return _state(job)

    async def find(self, key: str, value: str) -> BatchState | None:
        page = await self._call(self._sdk.batch.jobs.list_async(page_size=100))
        for job in page.data or []:
            if (job.metadata or {}).get(key) == value:
                return _state(job)
        return None

    async def retrieve(self, batch_id: str) -> BatchState:
        return _state(await self._call(self._sdk.batch.jobs.get_async(job_id=batch_id)))

    async def content(self, file_id: str) -> bytes:
        response = await self._call(self._sdk.files.download_async(file_id=file_id))
        return bytes(await response.aread())

    async def cancel(self, batch_id: str) -> BatchState:
        return _state(await self._call(self._sdk.batch.jobs.cancel_async(job_id=batch_id)))

    async def aclose(self) -> None:
        return None
