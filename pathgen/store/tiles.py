"""Tile rows: bulk insert (idempotent) and lookups."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.store.models import Tile

_CHUNK = 2000


async def insert_tiles(session: AsyncSession, slide_id: int, tiles: Iterable[Any]) -> None:
    """Insert ``TileSpec``-like objects for a slide; existing (slide, x, y, size) are kept."""
    rows = [
        {
            "slide_id": slide_id,
            "x": t.x,
            "y": t.y,
            "size": t.size_l0,
            "read_level": t.read_level,
            "mpp": t.mpp,
            "tile_px": t.out_px,
            "tissue_fraction": float(t.tissue_fraction),
        }
        for t in tiles
    ]
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    table = Tile.__table__  # a Core insert: no per-row ORM bookkeeping
    for start in range(0, len(rows), _CHUNK):
        stmt = insert(table).on_conflict_do_nothing(index_elements=["slide_id", "x", "y", "size"])
        await session.execute(stmt, rows[start : start + _CHUNK])
