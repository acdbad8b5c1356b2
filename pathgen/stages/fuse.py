"""Fuse stage (LLM): several models' descriptions of one tile → one description.

The fused revision's parents are all its inputs (``parent_ids``), so the provenance of
every merged finding stays traceable.

Example::

    out = await run_fuse(client, settings.captioning.fuse, [desc_a, desc_b, desc_c])
"""

from __future__ import annotations

from collections.abc import Sequence

from pathgen.errors import BadOutput
from pathgen.llm.base import ChatRequest, LLMClient
from pathgen.prompts import Template, render_parts
from pathgen.settings import StageSettings
from pathgen.stages.output import Parsed, StageOutput, build_request, call_stage, stage_params
from pathgen.stages.text import clean_prose

STAGE = "fuse"
DEFAULT_TEMPLATE = "fuse_v1"


def format_fuse(
    descriptions: Sequence[str], settings: StageSettings
) -> tuple[ChatRequest, Template]:
    """Pure: descriptions → request; ``meta`` carries them for the offline provider."""
    texts = [d.strip() for d in descriptions if d and d.strip()]
    if not texts:
        raise BadOutput("nothing to fuse: every description is empty")
    parts, template = render_parts(settings.template or DEFAULT_TEMPLATE, descriptions=texts)
    meta = {"stage": STAGE, "descriptions": texts}
    return build_request(parts, settings, meta=meta), template


def parse_fuse(text: str) -> Parsed:
    """Pure: model text → cleaned merged description (BadOutput on refusal/empty)."""
    return Parsed(text=clean_prose(text))


async def run_fuse(
    client: LLMClient, settings: StageSettings, descriptions: Sequence[str]
) -> StageOutput:
    """Merge ``descriptions``; provider errors and bad output give a failed output."""
    request, template = format_fuse(descriptions, settings)
    params = stage_params(settings, n_inputs=len(request.meta["descriptions"]))
    output, _ = await call_stage(STAGE, client, settings, request, template, parse_fuse, params)
    return output


def _similar(a: set[str], b: set[str], threshold: float) -> bool:
    return bool(a or b) and len(a & b) / max(1, len(a | b)) >= threshold


def fuse_extractive(descriptions: Sequence[str], threshold: float = 0.6) -> str:
    """Majority vote over sentences: keep a sentence when more than half of the
    descriptions contain a similar one (content-word Jaccard ≥ ``threshold``), once, in
    the order first seen. With no majority at all, the first description is returned."""
    from pathgen.stages.text import content_tokens, join_sentences, split_sentences

    docs = [split_sentences(d) for d in descriptions if d and d.strip()]
    if not docs:
        raise BadOutput("nothing to fuse: every description is empty")
    bags = [[content_tokens(s) for s in doc] for doc in docs]
    kept: list[str] = []
    kept_bags: list[set[str]] = []
    for doc, doc_bags in zip(docs, bags, strict=True):
        for sentence, bag in zip(doc, doc_bags, strict=True):
            if any(_similar(bag, k, threshold) for k in kept_bags):
                continue
            support = sum(any(_similar(bag, o, threshold) for o in other) for other in bags)
            if support * 2 > len(docs):
                kept.append(sentence)
                kept_bags.append(bag)
    return join_sentences(kept) if kept else " ".join(docs[0])
