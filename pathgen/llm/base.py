"""The provider protocol every LLM/VLM adapter implements, and its data types.

Stages build a :class:`ChatRequest` (pure), hand it to an :class:`LLMClient`, and
parse the :class:`ChatResult` (pure). Adapters raise only :mod:`pathgen.errors`
LLM errors.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ImagePart:
    """An image sent to a VLM, as JPEG bytes (already resized by the caller or adapter)."""

    jpeg: bytes

    @cached_property
    def data_url(self) -> str:
        """``data:image/jpeg;base64,...``, encoded once for all the calls that send it."""
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    text: str
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    model: str
    temperature: float = 0.2
    max_tokens: int = 512
    #: Free-form hints for offline/rule providers (e.g. the stage name); never sent over HTTP.
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    provider: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str | None = None
    attempts: int = 1
    #: Input tokens the provider served from its prompt (prefix) cache; part of input_tokens.
    cached_input_tokens: int = 0
    #: The batch whose output file held this answer (None for an online call).
    batch_id: str | None = None


@runtime_checkable
class LLMClient(Protocol):
    """One client per provider configuration; safe to share between tasks."""

    provider: str

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Run one chat completion or raise an :class:`pathgen.errors.LLMError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
