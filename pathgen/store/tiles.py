"""Tile rows: the idempotent bulk insert a tile completion batch runs once.

Example::

    Rows(tile_insert(session.bind.dialect.name), tile_rows(slide_id, result.tiles))
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pathgen.store.models import Tile


@cache
def tile_insert(dialect: str) -> Executable:
    """The insert of tile rows for ``dialect`` (a Core insert: no per-row ORM
    bookkeeping); rows whose (slide, x, y, size) exist are kept as they are."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(Tile.__table__).on_conflict_do_nothing(
        index_elements=["slide_id", "x", "y", "size"]
    )


def tile_rows(slide_id: int, tiles: Iterable[Any]) -> list[dict[str, Any]]:
    """Parameter rows of :func:`tile_insert` for ``TileSpec``-like objects of a slide."""
    return [
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
