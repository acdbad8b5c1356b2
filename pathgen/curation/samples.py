"""The double-review sample: tiles two curators review independently, for agreement.

An admin asks for a share of a run's captioned tiles (chosen by a fixed hash of the
tile id, so asking again for the same share adds nothing). Once one curator has
reviewed a sampled tile, "Second review next" hands it to another (see
:func:`pathgen.curation.holds.hold_next`); ``pathgen eval`` reports their agreement.

The second review is blind: the second curator is shown, and judges, the revision the
first one judged (for an edit, the revision they edited: the model's caption), never the
first curator's decision or edited text (:func:`blind_revision`). So both reviews judge
the same text, independently, and their decisions and edits can be compared.

Example::

    async with session_scope(engine) as session:
        added = await request_sample(session, "run-1", percent=10, requested_by="ana")
"""

from __future__ import annotations

from sqlalchemy import and_, exists, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import StoreError
from pathgen.store.models import CaptionRevision, CurationTile, Review, ReviewSample, utcnow

#: Tiles whose (tile id × this) mod 100 is below the percentage are sampled.
_HASH = 7919


async def request_sample(
    session: AsyncSession, run_id: str, *, percent: int, requested_by: str
) -> int:
    """Add about ``percent`` % of the run's captioned tiles to its sample; how many were added."""
    if not 1 <= percent <= 100:
        raise StoreError(f"a double-review sample is 1-100 % of the tiles, not {percent}")
    c = CurationTile
    sampled = exists().where(
        and_(ReviewSample.run_id == c.run_id, ReviewSample.tile_id == c.tile_id)
    )
    chosen = select(
        c.run_id, c.tile_id, literal(requested_by), literal(utcnow(), ReviewSample.created_at.type)
    ).where(c.run_id == run_id, (c.tile_id * _HASH) % 100 < percent, ~sampled)
    result = await session.execute(
        insert(ReviewSample).from_select(
            ["run_id", "tile_id", "requested_by", "created_at"], chosen
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def sample_size(session: AsyncSession, run_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(ReviewSample).where(ReviewSample.run_id == run_id)
        )
        or 0
    )


def second_review_conditions(run_id: str, account: str) -> list[object]:
    """Conditions on :class:`CurationTile` for "Second review next": sampled, reviewed by
    exactly one other curator, never by ``account``."""
    c = CurationTile
    in_sample = exists().where(
        and_(ReviewSample.run_id == c.run_id, ReviewSample.tile_id == c.tile_id)
    )
    by = select(Review.id).where(Review.run_id == c.run_id, Review.tile_id == c.tile_id)
    return [
        in_sample,
        c.review != "unreviewed",
        c.reviewer != account,
        ~exists(by.where(Review.reviewer == account)),
        ~exists(by.where(Review.reviewer != c.reviewer)),
    ]


async def blind_revision(
    session: AsyncSession, run_id: str, tile_id: int, account: str
) -> int | None:
    """The revision ``account``'s second review of ``tile_id`` judges: the one the first
    curator judged (for an edit, its parent). None when the tile is not waiting for a
    second review by ``account`` (see :func:`second_review_conditions`), or the first
    review names no revision."""
    c = CurationTile
    waiting = await session.scalar(
        select(c.tile_id).where(
            c.run_id == run_id, c.tile_id == tile_id, *second_review_conditions(run_id, account)
        )
    )
    if waiting is None:
        return None
    first = await session.scalar(
        select(Review)
        .where(Review.run_id == run_id, Review.tile_id == tile_id)
        .order_by(Review.id)
        .limit(1)
    )
    if first is None or first.revision_id is None:
        return None
    if first.decision != "edit":
        return first.revision_id
    return await session.scalar(
        select(CaptionRevision.parent_id).where(CaptionRevision.id == first.revision_id)
    )
