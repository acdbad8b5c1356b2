"""Tile rows go in as one idempotent bulk insert, with every value where it belongs."""

from __future__ import annotations

from sqlalchemy import select

from pathgen.slides.grid import TileSpec
from pathgen.store.bulk import write_rows
from pathgen.store.engine import session_scope
from pathgen.store.models import Slide, Tile
from pathgen.store.tiles import tile_rows


async def test_tile_rows_are_stored_once_with_their_values(engine) -> None:
    async with session_scope(engine) as s:
        slide = Slide(path="a.svs", status="pending")
        s.add(slide)
        await s.flush()
        slide_id = slide.id
    specs = [TileSpec(x, 7 * x + 1, 672, 1, 0.5, 336, 0.5 + x / 10_000) for x in range(0, 3000, 3)]
    dialect = engine.dialect.name
    for _ in range(2):  # a second write (a retried completion) adds nothing
        async with session_scope(engine) as s:
            await write_rows(s, [tile_rows(dialect, slide_id, specs)])
    async with session_scope(engine) as s:
        rows = (
            await s.execute(
                select(
                    Tile.x,
                    Tile.y,
                    Tile.size,
                    Tile.read_level,
                    Tile.mpp,
                    Tile.tile_px,
                    Tile.tissue_fraction,
                )
                .where(Tile.slide_id == slide_id)
                .order_by(Tile.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (t.x, t.y, t.size_l0, t.read_level, t.mpp, t.out_px, t.tissue_fraction) for t in specs
    ]
