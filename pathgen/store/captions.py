"""Final captions and curator reviews.

A tile's *final caption* in a run is its newest successful revision among the
caption-path outputs: a ``summarize`` (or ``fuse``-then-summarize) result on the
``caption`` branch, or a curator's ``human`` edit. Its *review state* is the newest
review decision (accept / reject / edit), or ``unreviewed``. A tile that a re-selection
no longer keeps has no final caption (its revisions stay stored).

Example::

    finals = await final_captions(session, "run-1")
    await human_edit(session, run_id="run-1", tile_id=7, text="...", reviewer="ana")
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import StoreError
from pathgen.store.models import CaptionRevision, Review, utcnow
from pathgen.store.revisions import NewRevision, insert_revisions
from pathgen.store.selections import current_round, dropped_tiles

FINAL_STAGES = ("summarize", "human")
DECISIONS = ("accept", "reject", "edit")


@dataclass(frozen=True)
class FinalCaption:
    tile_id: int
    revision_id: int
    text: str
    stage: str
    review: str  # accept | reject | edit | unreviewed
    reviewer: str | None


async def final_captions(
    session: AsyncSession, run_id: str, tile_ids: list[int] | None = None
) -> dict[int, FinalCaption]:
    """``{tile_id: FinalCaption}`` for every tile of the run that has one."""
    newest = (
        select(func.max(CaptionRevision.id).label("rid"))
        .where(
            CaptionRevision.run_id == run_id,
            CaptionRevision.stage.in_(FINAL_STAGES),
            CaptionRevision.branch == "caption",
            CaptionRevision.status == "ok",
        )
        .group_by(CaptionRevision.tile_id)
    )
    if await current_round(session, run_id) > 0:
        newest = newest.where(CaptionRevision.tile_id.not_in(dropped_tiles(run_id)))
    if tile_ids is not None:
        newest = newest.where(CaptionRevision.tile_id.in_(tile_ids))
    revs = (
        await session.scalars(
            select(CaptionRevision).where(CaptionRevision.id.in_(newest.scalar_subquery()))
        )
    ).all()
    reviews = await latest_reviews(session, run_id, [r.tile_id for r in revs])
    out: dict[int, FinalCaption] = {}
    for rev in revs:
        review = reviews.get(rev.tile_id)
        out[rev.tile_id] = FinalCaption(
            tile_id=rev.tile_id,
            revision_id=rev.id,
            text=rev.text,
            stage=rev.stage,
            review=review.decision if review else "unreviewed",
            reviewer=review.reviewer if review else None,
        )
    return out


async def latest_reviews(
    session: AsyncSession, run_id: str, tile_ids: list[int] | None = None
) -> dict[int, Review]:
    newest = select(func.max(Review.id)).where(Review.run_id == run_id).group_by(Review.tile_id)
    if tile_ids is not None:
        if not tile_ids:
            return {}
        newest = newest.where(Review.tile_id.in_(tile_ids))
    rows = await session.scalars(select(Review).where(Review.id.in_(newest.scalar_subquery())))
    return {r.tile_id: r for r in rows}


async def record_review(
    session: AsyncSession,
    *,
    run_id: str,
    tile_id: int,
    decision: str,
    reviewer: str,
    revision_id: int | None = None,
    note: str | None = None,
) -> Review:
    """Record an accept / reject (or edit) decision with who and when."""
    if decision not in DECISIONS:
        raise StoreError(f"review decision must be one of {DECISIONS}, not {decision!r}")
    if not reviewer.strip():
        raise StoreError("a review needs a reviewer name")
    review = Review(
        run_id=run_id,
        tile_id=tile_id,
        decision=decision,
        reviewer=reviewer,
        revision_id=revision_id,
        note=note,
        created_at=utcnow(),
    )
    session.add(review)
    await session.flush()
    return review


async def human_edit(
    session: AsyncSession,
    *,
    run_id: str,
    tile_id: int,
    text: str,
    reviewer: str,
    parent_id: int | None = None,
) -> int:
    """Store a curator's corrected caption as a new ``human`` revision, and an edit review.

    The revision corrects ``parent_id`` (a blind second review edits the revision the
    first curator judged), else the tile's final caption.
    """
    text = text.strip()
    if not text:
        raise StoreError("an edited caption cannot be empty")
    if parent_id is None:
        current = (await final_captions(session, run_id, [tile_id])).get(tile_id)
        parent_id = current.revision_id if current else None
    (rev_id,) = await insert_revisions(
        session,
        [
            NewRevision(
                tile_id=tile_id,
                run_id=run_id,
                stage="human",
                text=text,
                provider="human",
                model="curator",
                parent_id=parent_id,
                created_by=reviewer,
            )
        ],
    )
    await record_review(
        session,
        run_id=run_id,
        tile_id=tile_id,
        decision="edit",
        reviewer=reviewer,
        revision_id=rev_id,
    )
    return rev_id
