"""Literal vocabularies shared across pathgen."""

from __future__ import annotations

PIPELINE_STAGES: tuple[str, ...] = (
    "tile",
    "embed",
    "select",
    "describe",
    "fuse",
    "degrade",
    "revise",
    "summarize",
)
