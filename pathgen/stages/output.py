"""The result of one caption stage call, with everything needed to store it as a revision.

Every runner returns a :class:`StageOutput`; provider errors become ``status="failed"``
outputs (the run continues), never exceptions.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from pathgen.errors import BadOutput, LLMError
from pathgen.llm.base import ChatRequest, ChatResult, ImagePart, LLMClient, Message
from pathgen.prompts import PromptParts, Template
from pathgen.settings import StageSettings

StageStatus = Literal["ok", "failed"]


@dataclass
class StageOutput:
    """One stage output and its provenance.

    ``raw`` keeps the model's unparsed answer when parsing failed; ``edits`` lists the
    degrade edits; ``metrics`` holds stage-specific figures (e.g. ``clip_tokens``).
    """

    stage: str
    text: str
    status: StageStatus
    error: str | None
    provider: str
    model: str
    template_name: str | None
    template_hash: str | None
    params: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0
    #: Of ``input_tokens``, those the provider served from its prompt cache.
    cached_input_tokens: int = 0
    latency_s: float = 0.0
    cost: float = 0.0
    edits: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    raw: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None  # "length": the answer hit max_tokens
    batch_id: str | None = None  # the batch that answered (None: an online call)
    #: Why a failed output failed: the provider's error or the parser's, with its class
    #: (``transient``, ``pauses_stage``) for the caller to act on.
    failure: LLMError | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (the failure as its message, in ``error``)."""
        return copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self)[:-1]})


@dataclass(frozen=True)
class Parsed:
    """What an output parser extracted from the model's text."""

    text: str
    edits: list[dict[str, Any]] = field(default_factory=list)


def compute_cost(
    settings: StageSettings, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> float:
    """Price of a call from the stage's per-1k-token prices.

    ``cached_input_tokens`` (a part of ``input_tokens``) are priced at
    ``price_cached_input_per_1k`` (the input price when that is not set).
    """
    cached = min(cached_input_tokens, input_tokens)
    cached_price = settings.price_cached_input_per_1k
    if cached_price is None:
        cached_price = settings.price_input_per_1k
    return (
        (input_tokens - cached) / 1000.0 * settings.price_input_per_1k
        + cached / 1000.0 * cached_price
        + output_tokens / 1000.0 * settings.price_output_per_1k
    )


def stage_params(settings: StageSettings, **extra: Any) -> dict[str, Any]:
    """The generation parameters recorded with each output."""
    params: dict[str, Any] = {
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "mode": settings.mode,
        "image_max_side": settings.image_max_side,
    }
    params.update(extra)
    return params


def build_request(
    parts: PromptParts,
    settings: StageSettings,
    *,
    images: tuple[ImagePart, ...] = (),
    meta: dict[str, Any] | None = None,
) -> ChatRequest:
    """A :class:`ChatRequest` with an optional system message and one user message."""
    messages = []
    if parts.system:
        messages.append(Message(role="system", text=parts.system))
    messages.append(Message(role="user", text=parts.user, images=images))
    return ChatRequest(
        messages=tuple(messages),
        model=settings.model,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        meta=dict(meta or {}),
    )


async def call_stage(
    stage: str,
    client: LLMClient,
    settings: StageSettings,
    request: ChatRequest,
    template: Template,
    parse: Callable[[str], Parsed],
    params: dict[str, Any],
) -> tuple[StageOutput, ChatResult | None]:
    """Send ``request``, parse the answer; provider errors and bad output become failed outputs.

    Returns the output and the raw :class:`ChatResult` (``None`` when the call failed).
    """
    started = time.perf_counter()
    base = {
        "stage": stage,
        "template_name": template.name,
        "template_hash": template.sha256,
        "params": params,
    }
    try:
        result = await client.complete(request)
    except LLMError as exc:
        return (
            StageOutput(
                text="",
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                provider=getattr(client, "provider", settings.provider),
                model=settings.model,
                latency_s=time.perf_counter() - started,
                raw=exc.raw if isinstance(exc, BadOutput) else None,
                attempts=exc.attempts,
                failure=exc,
                **base,
            ),
            None,
        )
    usage = {
        "provider": result.provider,
        "model": result.model,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cached_input_tokens": result.cached_input_tokens,
        "latency_s": result.latency_s or (time.perf_counter() - started),
        "cost": compute_cost(
            settings, result.input_tokens, result.output_tokens, result.cached_input_tokens
        ),
        "attempts": result.attempts,
        "finish_reason": result.finish_reason,
        "batch_id": result.batch_id,
    }
    try:
        parsed = parse(result.text)
    except BadOutput as exc:
        return (
            StageOutput(
                text="",
                status="failed",
                error=f"BadOutput: {exc}",
                raw=result.text,
                failure=exc,
                **usage,
                **base,
            ),
            result,
        )
    return (
        StageOutput(text=parsed.text, status="ok", error=None, edits=parsed.edits, **usage, **base),
        result,
    )
