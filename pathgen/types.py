"""Typed ids and literal vocabularies shared across pathgen."""

from __future__ import annotations

from typing import Literal, NewType

RunId = NewType("RunId", str)
SlideId = NewType("SlideId", int)
TileId = NewType("TileId", int)
RevisionId = NewType("RevisionId", int)

SlideStatus = Literal["pending", "tiled", "failed"]
RunStatus = Literal["created", "running", "completed", "paused", "failed", "interrupted"]
RevisionStatus = Literal["ok", "failed"]
WorkStatus = Literal["queued", "leased", "done", "failed"]
ReviewDecision = Literal["accept", "reject", "edit"]

CAPTION_STAGES: tuple[str, ...] = ("describe", "degrade", "revise", "summarize", "fuse", "human")
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
