"""Pure tile selection: retrieval scores, k-means diversity, near-duplicate filtering.

Nothing here does I/O; the stages load embeddings and store decisions. ``kmeans`` and
``select_tiles`` import torch on first use.

Example::

    from pathgen.select import select_tiles, report_prompts, top_matches
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from pathgen.select.dedupe import greedy_dedupe
from pathgen.select.llm_prompts import organ_prompts_request, parse_organ_prompts
from pathgen.select.report import report_prompts, report_sentences
from pathgen.select.search import search_by_text, search_by_vector, top_matches

_LAZY = {
    "KMeansResult": "pathgen.select.kmeans",
    "default_k": "pathgen.select.kmeans",
    "kmeans": "pathgen.select.kmeans",
    "SelectionDecision": "pathgen.select.tiles",
    "SelectionResult": "pathgen.select.tiles",
    "diverse_sample": "pathgen.select.tiles",
    "select_tiles": "pathgen.select.tiles",
    "top_k_indices": "pathgen.select.tiles",
}

__all__ = [
    "KMeansResult",
    "SelectionDecision",
    "SelectionResult",
    "default_k",
    "diverse_sample",
    "greedy_dedupe",
    "kmeans",
    "organ_prompts_request",
    "parse_organ_prompts",
    "report_prompts",
    "report_sentences",
    "search_by_text",
    "search_by_vector",
    "select_tiles",
    "top_k_indices",
    "top_matches",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pathgen.select' has no attribute {name!r}")
