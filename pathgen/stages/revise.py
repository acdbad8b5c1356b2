"""Revise stage (VLM or LLM): image + description -> corrected description.

Runs on the describe output (the caption path) and on degraded copies (to measure with
:mod:`pathgen.stages.recovery` how many planted errors the reviser undoes).

Example::

    out = await run_revise(client, settings.captioning.revise, description, image=tile)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathgen.llm.base import ChatRequest, LLMClient
from pathgen.prompts import Template, render_parts
from pathgen.settings import StageSettings
from pathgen.stages.images import to_image_part
from pathgen.stages.output import Parsed, StageOutput, build_request, call_stage, stage_params
from pathgen.stages.text import clean_prose

if TYPE_CHECKING:
    from pathgen.stages.images import ImageInput

STAGE = "revise"
DEFAULT_TEMPLATE = "revise_v1"


def format_revise(
    description: str, settings: StageSettings, image: ImageInput | None = None
) -> tuple[ChatRequest, Template]:
    """Pure: description (+ image for a VLM) -> request; ``meta`` carries the description."""
    parts, template = render_parts(
        settings.template or DEFAULT_TEMPLATE,
        description=description.strip(),
        has_image=image is not None,
    )
    images = (to_image_part(image, settings.image_max_side),) if image is not None else ()
    meta = {"stage": STAGE, "description": description.strip()}
    return build_request(parts, settings, images=images, meta=meta), template


def parse_revise(text: str) -> Parsed:
    """Pure: model text -> cleaned corrected description (BadOutput on refusal/empty)."""
    return Parsed(text=clean_prose(text))


async def run_revise(
    client: LLMClient,
    settings: StageSettings,
    description: str,
    *,
    image: ImageInput | None = None,
    input_kind: str = "description",
) -> StageOutput:
    """Revise ``description``; ``input_kind`` (e.g. ``"describe"``/``"degraded"``) is recorded."""
    request, template = format_revise(description, settings, image)
    params = stage_params(settings, has_image=image is not None, input_kind=input_kind)
    output, _ = await call_stage(STAGE, client, settings, request, template, parse_revise, params)
    return output
