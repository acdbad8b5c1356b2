"""The curation index (``curation_tiles``, kept by triggers) and its compare-and-set.

A curator's accept, reject or edit applies to the revision they were shown. Before
writing, :func:`claim_revision` bumps the tile's ``version`` only where its final revision
is still that one; on Postgres the row stays locked until the writer commits, and a
concurrent writer re-checks after it (so one of two edits of the same text wins and the
other is told); on SQLite writers are serialised by the database lock.

Example::

    async with session_scope(engine) as session:
        if not await claim_revision(session, "run-1", tile_id=7, revision_id=42):
            ...  # someone changed the caption since the page was shown: 409
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.store.models import CurationTile


async def claim_revision(
    session: AsyncSession, run_id: str, tile_id: int, revision_id: int
) -> bool:
    """Whether ``revision_id`` is still the tile's final revision (and now claimed)."""
    result = await session.execute(
        update(CurationTile)
        .where(
            CurationTile.run_id == run_id,
            CurationTile.tile_id == tile_id,
            CurationTile.final_revision_id == revision_id,
        )
        .values(version=CurationTile.version + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def lock_tile(session: AsyncSession, run_id: str, tile_id: int) -> None:
    """Bump the tile's ``version`` whatever its final revision (a blind second review judges
    an earlier one); on Postgres the row stays locked until the writer commits."""
    await session.execute(
        update(CurationTile)
        .where(CurationTile.run_id == run_id, CurationTile.tile_id == tile_id)
        .values(version=CurationTile.version + 1)
        .execution_options(synchronize_session=False)
    )
