"""LLM-written retrieval prompts: build the request and parse the answer (pure, no network).

The caller sends the request through an :class:`pathgen.llm.base.LLMClient` and caches
the result; a parse keeps every usable line and drops the rest.

Example::

    request = organ_prompts_request("kidney", n=20, model="gpt-4o-mini")
    result = await client.complete(request)
    prompts = parse_organ_prompts(result.text, organ="kidney")
"""

from __future__ import annotations

import hashlib
import re

from pathgen.errors import BadOutput
from pathgen.llm.base import ChatRequest, Message
from pathgen.promptlib import RetrievalPrompt, prompt_text
from pathgen.prompts import render_parts

TEMPLATE = "organ_prompts_v1"

_MARKER = re.compile(r"^\s*(?:[-*•·]+|\d{1,3}[.)]|\(?\d{1,3}\))\s*")
_SEPARATORS = (" – ", " — ", " - ", ": ", " – ", "–", "—")
_MIN_DEFINITION_WORDS = 3
#: Free-text lines that are chatter around the prompts, not prompts.
_CHATTER = re.compile(
    r"^(here|sure|certainly|of course|okay|ok|i |i'm|i am|i can|as an|sorry|unfortunately|"
    r"note|these|below|the following|hope|let me)\b",
    re.IGNORECASE,
)


def organ_prompts_request(
    organ: str, n: int = 20, *, model: str, temperature: float = 0.7, max_tokens: int = 2048
) -> ChatRequest:
    """The chat request (from ``prompts/organ_prompts_v1.jinja2``) asking for ``n``
    ``feature – definition`` prompts for ``organ``; ``meta`` names the template and hash."""
    parts, template = render_parts(TEMPLATE, organ=organ, n_prompts=n)
    messages = [Message(role="user", text=parts.user)]
    if parts.system:
        messages.insert(0, Message(role="system", text=parts.system))
    return ChatRequest(
        messages=tuple(messages),
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        meta={
            "stage": "organ_prompts",
            "organ": organ,
            "n_prompts": n,
            "template_name": template.name,
            "template_hash": template.sha256,
        },
    )


def _split(line: str) -> tuple[str, str] | None:
    for sep in _SEPARATORS:
        if sep in line:
            feature, definition = line.split(sep, 1)
            feature = feature.strip(" *_`\"'")
            definition = definition.strip(" *_`\"'")
            if feature and definition:
                return feature, definition
    return None


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]
    return slug or hashlib.sha256(text.encode()).hexdigest()[:8]


def parse_organ_prompts(text: str, organ: str, *, strict: bool = False) -> list[RetrievalPrompt]:
    """Parse ``feature – definition`` (or ``feature: definition``) lines into prompts.

    Numbering, bullets and markdown emphasis are stripped; lines without a separator are
    kept whole as free-text prompts unless ``strict``. Duplicates are dropped. Raises
    :class:`BadOutput` (with the raw text) when nothing usable remains.
    """
    prompts: list[RetrievalPrompt] = []
    seen: set[str] = set()
    organ_key = organ.strip().lower()
    for raw in text.splitlines():
        line = _MARKER.sub("", raw.strip()).strip()
        if not line or line.endswith(":") or line.startswith("#"):
            continue
        pair = _split(line)
        if pair is None:
            if strict or len(line.split()) < _MIN_DEFINITION_WORDS + 1 or _CHATTER.match(line):
                continue
            feature, body = None, line.rstrip()
        else:
            feature, definition = pair
            if len(definition.split()) < _MIN_DEFINITION_WORDS:
                continue
            body = prompt_text(feature, definition)
        key = body.lower()
        if key in seen:
            continue
        seen.add(key)
        prompts.append(
            RetrievalPrompt(
                id=f"llm:{organ_key}:{_slug(feature or body)}:{len(prompts)}",
                source="llm",
                text=body,
                organ=organ_key,
                feature=feature,
            )
        )
    if not prompts:
        raise BadOutput(
            f"no usable retrieval prompts for {organ!r} in the model's answer", raw=text
        )
    return prompts
