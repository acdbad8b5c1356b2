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
    "instruct",
)

#: The question types of the ``instruct`` stage.
INSTRUCT_KINDS: tuple[str, ...] = ("open", "yesno", "choice", "label", "conversation")
