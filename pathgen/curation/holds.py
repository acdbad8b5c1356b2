"""Review holds: "Review next" hands each curator a different unreviewed tile.

Like a work-queue lease: the tile is held for one account until ``expires_at``; nobody
else is handed it meanwhile, and an expired hold is free again. Asking for the next
tile releases the asker's earlier holds in that run. Two curators asking at once are
kept apart by the holds table's primary key (``INSERT … ON CONFLICT DO NOTHING``: the
loser takes the following tile).

Example::

    async with session_scope(engine) as session:
        unreviewed_lung = [CurationTile.review == "unreviewed", CurationTile.organ == "lung"]
        tile_id = await hold_next(session, "run-1", "ana", extra=unreviewed_lung)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.store.models import CurationTile, ReviewHold, utcnow

HOLD_TTL = timedelta(minutes=5)
_ATTEMPTS = 20


async def hold_next(
    session: AsyncSession,
    run_id: str,
    account: str,
    *,
    extra: Sequence[Any] = (),
    ttl: timedelta = HOLD_TTL,
) -> int | None:
    """Hold the first tile of the run with a final caption, matching ``extra`` (for
    example ``CurationTile.review == "unreviewed"``), that nobody holds; its id, or
    ``None`` when none is left."""
    now = utcnow()
    await session.execute(
        delete(ReviewHold).where(
            ReviewHold.run_id == run_id,
            (ReviewHold.account == account) | (ReviewHold.expires_at < now),
        )
    )
    held = exists().where(
        and_(ReviewHold.run_id == CurationTile.run_id, ReviewHold.tile_id == CurationTile.tile_id)
    )
    taken: list[int] = []
    for _ in range(_ATTEMPTS):
        stmt = select(CurationTile.tile_id).where(
            CurationTile.run_id == run_id,
            CurationTile.final_revision_id.is_not(None),
            ~held,
            *extra,
        )
        if taken:
            stmt = stmt.where(CurationTile.tile_id.not_in(taken))
        tile_id = await session.scalar(stmt.order_by(CurationTile.tile_id).limit(1))
        if tile_id is None:
            return None
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        result = await session.execute(
            insert(ReviewHold)
            .values(run_id=run_id, tile_id=tile_id, account=account, expires_at=now + ttl)
            .on_conflict_do_nothing()
        )
        if result.rowcount:  # type: ignore[attr-defined]
            return int(tile_id)
        taken.append(tile_id)
    return None


async def holder(session: AsyncSession, run_id: str, tile_id: int) -> tuple[str, datetime] | None:
    """Who holds the tile now, and until when (``None``: nobody)."""
    row = (
        await session.execute(
            select(ReviewHold.account, ReviewHold.expires_at).where(
                ReviewHold.run_id == run_id,
                ReviewHold.tile_id == tile_id,
                ReviewHold.expires_at > utcnow(),
            )
        )
    ).first()
    return (row[0], row[1]) if row else None
