"""Plain records the evaluation works on, filled from the store by :mod:`pathgen.eval.gather`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TileRef:
    """Where a tile's pixels are: slide path, level-0 origin and side, output pixels."""

    tile_id: int
    slide_path: str
    x: int
    y: int
    size: int
    tile_px: int


@dataclass(frozen=True)
class RevisionRecord:
    """One caption revision (the columns the evaluation needs)."""

    id: int
    tile_id: int
    stage: str
    text: str
    provider: str
    model: str
    parent_id: int | None = None
    branch: str = "caption"
    status: str = "ok"
    edits: list[dict[str, Any]] | None = None

    @property
    def group(self) -> str:
        """``stage/provider:model``, the unit the per-stage metrics are reported for."""
        return f"{self.stage}/{self.provider}:{self.model}"


@dataclass(frozen=True)
class ReviewRecord:
    tile_id: int
    decision: str
    revision_id: int | None = None


@dataclass(frozen=True)
class InstructItemRecord:
    """One current instruct item (the columns the evaluation needs)."""

    id: int
    tile_id: int
    kind: str
    verify_status: str
    verify_reason: str | None
    #: ``answer_label`` ("yes"/"no") of each yes/no turn.
    yes_no: tuple[str, ...] = ()
    turns: int = 1
    cost: float = 0.0


@dataclass
class RunData:
    """Everything :func:`pathgen.eval.evaluate.evaluate_run` reads about one run."""

    run_id: str
    config: dict[str, Any]
    tiles: dict[int, TileRef]
    revisions: list[RevisionRecord]
    reviews: list[ReviewRecord] = field(default_factory=list)  # newest per tile
    final_revision_ids: dict[int, int] = field(default_factory=dict)  # tile -> revision
    instruct: list[InstructItemRecord] = field(default_factory=list)  # current items
