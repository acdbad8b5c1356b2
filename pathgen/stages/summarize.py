"""Summarize stage (LLM): revised description -> caption within the CLIP context.

The caption must fit ``max_clip_tokens`` (77) tokens of the run's open_clip tokenizer,
counted with the tokenizer itself. A too-long caption gets exactly one retry with the
stricter template (``summarize_strict_v1``); if that is still too long the output is
failed with ``"caption is N tokens, limit 77"`` - never truncated.

Example::

    out = await run_summarize(client, settings.captioning.summarize, text, clip.count_tokens)
    out.metrics["clip_tokens"]
"""

from __future__ import annotations

from collections.abc import Callable

from pathgen.llm.base import ChatRequest, LLMClient
from pathgen.prompts import Template, render_parts
from pathgen.settings import StageSettings
from pathgen.stages.output import Parsed, StageOutput, build_request, call_stage, stage_params
from pathgen.stages.text import clean_prose

STAGE = "summarize"
DEFAULT_TEMPLATE = "summarize_v1"
STRICT_TEMPLATE = "summarize_strict_v1"


def format_summarize(
    description: str,
    settings: StageSettings,
    max_clip_tokens: int,
    *,
    strict: bool = False,
    previous: str | None = None,
    previous_tokens: int | None = None,
    strict_template: str = STRICT_TEMPLATE,
) -> tuple[ChatRequest, Template]:
    """Pure: description -> request (the strict variant also shows the previous caption)."""
    context = {"description": description.strip(), "max_clip_tokens": max_clip_tokens}
    if strict:
        name = strict_template
        context.update(previous=previous or "", previous_tokens=previous_tokens or 0)
    else:
        name = settings.template or DEFAULT_TEMPLATE
    parts, template = render_parts(name, **context)
    meta = {
        "stage": STAGE,
        "description": description.strip(),
        "max_clip_tokens": max_clip_tokens,
        "strict": strict,
    }
    return build_request(parts, settings, meta=meta), template


def parse_summarize(text: str) -> Parsed:
    """Pure: model text -> one-line caption without quotes or a "Caption:" prefix."""
    cleaned = clean_prose(text).strip("\"'\u201c\u201d ")
    return Parsed(text=cleaned)


async def run_summarize(
    client: LLMClient,
    settings: StageSettings,
    description: str,
    count_tokens: Callable[[str], int],
    *,
    max_clip_tokens: int = 77,
    strict_template: str = STRICT_TEMPLATE,
) -> StageOutput:
    """Summarize ``description`` into a caption of at most ``max_clip_tokens`` CLIP tokens.

    ``count_tokens`` is the run's tokenizer count (start/end tokens included, no truncation).
    ``metrics`` records ``clip_tokens``, ``strict_retry`` and the first attempt's figures.
    """
    params = stage_params(settings, max_clip_tokens=max_clip_tokens)
    request, template = format_summarize(description, settings, max_clip_tokens)
    first, _ = await call_stage(STAGE, client, settings, request, template, parse_summarize, params)
    if not first.ok:
        return first
    n_first = count_tokens(first.text)
    if n_first <= max_clip_tokens:
        first.metrics = {"clip_tokens": n_first, "strict_retry": False}
        return first
    request, template = format_summarize(
        description,
        settings,
        max_clip_tokens,
        strict=True,
        previous=first.text,
        previous_tokens=n_first,
        strict_template=strict_template,
    )
    second, _ = await call_stage(
        STAGE, client, settings, request, template, parse_summarize, params
    )
    second.input_tokens += first.input_tokens
    second.output_tokens += first.output_tokens
    second.cached_input_tokens += first.cached_input_tokens
    second.latency_s += first.latency_s
    second.cost += first.cost
    second.attempts += first.attempts
    second.metrics = {
        "strict_retry": True,
        "first_clip_tokens": n_first,
        "first_text": first.text,
        "first_template_name": first.template_name,
        "first_template_hash": first.template_hash,
    }
    if not second.ok:
        return second
    n_second = count_tokens(second.text)
    second.metrics["clip_tokens"] = n_second
    if n_second > max_clip_tokens:
        second.raw = second.text
        second.text = ""
        second.status = "failed"
        second.error = f"caption is {n_second} tokens, limit {max_clip_tokens}"
    return second
