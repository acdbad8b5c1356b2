"""Describe stage (VLM): tile image + optional context -> detailed morphological description.

The default prompt follows PathGen's rule: describe what is visible first, use the context
(report, existing caption, example captions of similar tiles) only to correct or
supplement, and never mention the context.

Example::

    out = await run_describe(client, settings.captioning.describe, DescribeInput(image=tile))
    out.status, out.text
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pathgen.errors import BadOutput
from pathgen.llm.base import ChatRequest, LLMClient
from pathgen.prompts import Template, render_parts
from pathgen.settings import StageSettings
from pathgen.stages.images import to_image_part
from pathgen.stages.output import Parsed, StageOutput, build_request, call_stage, stage_params
from pathgen.stages.text import clean_prose

if TYPE_CHECKING:
    from pathgen.stages.images import ImageInput

STAGE = "describe"
DEFAULT_TEMPLATE = "describe_v1"
MIN_WORDS = 5


@dataclass(frozen=True)
class DescribeInput:
    """The tile image and optional context for one description."""

    image: ImageInput
    report: str | None = None
    caption: str | None = None
    examples: tuple[str, ...] = field(default_factory=tuple)


def format_describe(inputs: DescribeInput, settings: StageSettings) -> tuple[ChatRequest, Template]:
    """Pure: inputs -> chat request (system + user message with the image) and its template."""
    parts, template = render_parts(
        settings.template or DEFAULT_TEMPLATE,
        report=(inputs.report or "").strip() or None,
        caption=(inputs.caption or "").strip() or None,
        examples=[e.strip() for e in inputs.examples if e and e.strip()],
    )
    image = to_image_part(inputs.image, settings.image_max_side)
    meta: dict[str, Any] = {"stage": STAGE}
    return build_request(parts, settings, images=(image,), meta=meta), template


def parse_describe(text: str) -> Parsed:
    """Pure: model text -> cleaned prose; raises BadOutput on refusals and empty/trivial text."""
    cleaned = clean_prose(text)
    if len(cleaned.split()) < MIN_WORDS:
        raise BadOutput(f"description too short ({len(cleaned.split())} words)", raw=text)
    return Parsed(text=cleaned)


async def run_describe(
    client: LLMClient, settings: StageSettings, inputs: DescribeInput
) -> StageOutput:
    """Describe one tile; provider errors and bad output give a failed :class:`StageOutput`."""
    request, template = format_describe(inputs, settings)
    params = stage_params(
        settings,
        has_report=bool(inputs.report),
        has_caption=bool(inputs.caption),
        n_examples=len(inputs.examples),
    )
    output, _ = await call_stage(STAGE, client, settings, request, template, parse_describe, params)
    return output
