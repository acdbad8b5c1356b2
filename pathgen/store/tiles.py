"""Tile rows: the idempotent bulk insert a tile completion batch runs once.

On SQLite the rows go to the driver as tuples (SQLAlchemy's per-row parameter handling
costs more than SQLite's insert); on Postgres through a Core insert (asyncpg batches it).

Example::

    await write_rows(session, [tile_rows(session.bind.dialect.name, slide_id, tiles)])
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pathgen.store.bulk import Rows
from pathgen.store.models import Tile

#: The columns a tile row sets, in the order of the SQLite statement's parameters.
COLUMNS = ("slide_id", "x", "y", "size", "read_level", "mpp", "tile_px", "tissue_fraction")


@cache
def tile_insert(dialect: str) -> Executable | str:
    """The insert of tile rows for ``dialect``; rows whose (slide, x, y, size) exist are
    kept as they are."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Tile.__table__).on_conflict_do_nothing(
        index_elements=["slide_id", "x", "y", "size"]
    )
    if dialect == "postgresql":
        return stmt
    return str(stmt.compile(dialect=sqlite.dialect(), column_keys=list(COLUMNS)))


def tile_rows(dialect: str, slide_id: int, tiles: Iterable[Any]) -> Rows:
    """The rows of :func:`tile_insert` for ``TileSpec``-like objects of a slide."""
    values = [
        (
            slide_id,
            t.x,
            t.y,
            t.size_l0,
            t.read_level,
            t.mpp,
            t.out_px,
            float(t.tissue_fraction),
        )
        for t in tiles
    ]
    statement = tile_insert(dialect)
    if isinstance(statement, str):
        return Rows(statement, values)
    return Rows(statement, [dict(zip(COLUMNS, v, strict=True)) for v in values])
