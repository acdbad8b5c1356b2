"""A tile's caption history: its revision chains with word-level diffs, and its reviews.

Example::

    async with read_scope(engine) as session:
        history = await tile_history(session, tile_id=7, run_id="run-1")
    for chain in history.chains:
        for step in chain:
            print(step.stage, step.diff)
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import StoreError
from pathgen.store.models import CaptionRevision, InstructItem, Review, Slide, Tile
from pathgen.store.revisions import revision_chain, tile_revisions

DiffOp = Literal["equal", "insert", "delete"]


def word_diff(old: str, new: str) -> list[tuple[DiffOp, str]]:
    """Word-level diff of ``old`` -> ``new`` as ``(op, words)`` pieces in reading order.

    >>> word_diff("focal necrosis present", "no necrosis present")
    [('delete', 'focal'), ('insert', 'no'), ('equal', 'necrosis present')]
    """
    a, b = old.split(), new.split()
    out: list[tuple[DiffOp, str]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.append(("equal", " ".join(a[i1:i2])))
            continue
        if tag in ("delete", "replace"):
            out.append(("delete", " ".join(a[i1:i2])))
        if tag in ("insert", "replace"):
            out.append(("insert", " ".join(b[j1:j2])))
    return out


@dataclass
class RevisionStep:
    """One revision in a chain, with the diff from its parent (None for the first)."""

    revision_id: int
    parent_id: int | None
    stage: str
    branch: str
    status: str
    text: str
    provider: str
    model: str
    template_name: str | None
    template_hash: str | None
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost: float
    created_by: str | None
    created_at: str
    error: str | None
    edits: list[Any] | None
    diff: list[tuple[DiffOp, str]] | None = None
    #: The instruct items made from this revision (see :func:`_instruct_items`).
    instruct: list[dict[str, Any]] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        """Template name and short hash, e.g. ``describe_v1@0a1b2c3d``."""
        if not self.template_name:
            return "-"
        short = (self.template_hash or "")[:8]
        return f"{self.template_name}@{short}" if short else self.template_name


@dataclass
class TileHistory:
    tile_id: int
    run_ids: list[str]
    slide_path: str
    x: int
    y: int
    size: int
    mpp: float
    tile_px: int
    chains: list[list[RevisionStep]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (diffs as ``[op, words]`` lists)."""
        return asdict(self)


def _step(rev: CaptionRevision, parent: CaptionRevision | None) -> RevisionStep:
    return RevisionStep(
        revision_id=rev.id,
        parent_id=rev.parent_id,
        stage=rev.stage,
        branch=rev.branch,
        status=rev.status,
        text=rev.text,
        provider=rev.provider,
        model=rev.model,
        template_name=rev.template_name,
        template_hash=rev.template_hash,
        input_tokens=rev.input_tokens,
        output_tokens=rev.output_tokens,
        latency_s=rev.latency_s,
        cost=rev.cost,
        created_by=rev.created_by,
        created_at=rev.created_at.isoformat(),
        error=rev.error,
        edits=rev.edits,
        diff=word_diff(parent.text, rev.text) if parent is not None else None,
    )


async def _instruct_items(
    session: AsyncSession, tile_id: int, run_id: str | None
) -> dict[int, list[dict[str, Any]]]:
    """``{revision id: [item dicts]}`` of the tile's instruct items, oldest first."""
    stmt = select(InstructItem).where(InstructItem.tile_id == tile_id)
    if run_id is not None:
        stmt = stmt.where(InstructItem.run_id == run_id)
    out: dict[int, list[dict[str, Any]]] = {}
    for item in await session.scalars(stmt.order_by(InstructItem.id)):
        out.setdefault(item.revision_id, []).append(
            {
                "item_id": item.id,
                "parent_id": item.parent_id,
                "kind": item.kind,
                "turns": item.turns,
                "provider": item.provider,
                "model": item.model,
                "template_name": item.template_name,
                "template_hash": item.template_hash,
                "input_tokens": item.input_tokens,
                "output_tokens": item.output_tokens,
                "cost": item.cost,
                "verify_status": item.verify_status,
                "verify_reason": item.verify_reason,
                "verifier": item.verifier,
            }
        )
    return out


async def tile_history(
    session: AsyncSession, tile_id: int, run_id: str | None = None
) -> TileHistory:
    """Every revision chain of a tile (one per leaf revision) and its reviews.

    Chains run oldest revision first; the ``caption`` branch's chains come first.

    Raises :class:`StoreError` when the tile does not exist.
    """
    row = (
        await session.execute(
            select(Tile, Slide.path)
            .join(Slide, Slide.id == Tile.slide_id)
            .where(Tile.id == tile_id)
        )
    ).first()
    if row is None:
        raise StoreError(
            f"tile {tile_id} does not exist; find tile ids with `pathgen captions search`"
        )
    tile, slide_path = row
    revisions = await tile_revisions(session, tile_id, run_id)
    parents = {r.parent_id for r in revisions if r.parent_id is not None}
    # The caption branch first, then side branches (degraded copies), each oldest first.
    leaves = sorted(
        (r for r in revisions if r.id not in parents), key=lambda r: (r.branch != "caption", r.id)
    )
    items = await _instruct_items(session, tile_id, run_id)
    chains: list[list[RevisionStep]] = []
    for leaf in leaves:
        chain = await revision_chain(session, leaf.id)
        chains.append([_step(rev, chain[i - 1] if i else None) for i, rev in enumerate(chain)])
        for step in chains[-1]:
            step.instruct = items.get(step.revision_id, [])
    review_stmt = select(Review).where(Review.tile_id == tile_id)
    if run_id is not None:
        review_stmt = review_stmt.where(Review.run_id == run_id)
    reviews = [
        {
            "review_id": r.id,
            "run_id": r.run_id,
            "revision_id": r.revision_id,
            "decision": r.decision,
            "reviewer": r.reviewer,
            "note": r.note,
            "created_at": r.created_at.isoformat(),
        }
        for r in await session.scalars(review_stmt.order_by(Review.id))
    ]
    return TileHistory(
        tile_id=tile.id,
        run_ids=sorted({r.run_id for r in revisions}),
        slide_path=slide_path,
        x=tile.x,
        y=tile.y,
        size=tile.size,
        mpp=tile.mpp,
        tile_px=tile.tile_px,
        chains=chains,
        reviews=reviews,
    )
