""" "Go to tile #N" lands on the right tiles at deep positions, skipping at most one block
of index entries (the position index of migration 0009), in both orders and per review
state, on SQLite and Postgres."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store import migrate
from pathgen.store.captions import record_review
from pathgen.store.engine import read_scope, session_scope
from pathgen.store.models import Tile
from pathgen.store.revisions import NewRevision, add_revisions
from pathgen.web.grid import BLOCK, GridQuery, grid_page
from tests.populate import populate

PER_PAGE = 7


def _tile_ids(start: int) -> list[int]:
    """2,600 ids over 9 blocks, with gaps: dense, sparse, then a far block."""
    dense = [start + i for i in range(1500)]
    sparse = [start + 1500 + 3 * i for i in range(1000)]
    far = [start + 40 * BLOCK + i for i in range(100)]
    return dense + sparse + far


async def _captioned_run(engine: AsyncEngine) -> tuple[str, list[int], dict[int, str]]:
    p = await populate(engine)
    ids = _tile_ids(start=((max(p.tile_ids) // BLOCK) + 1) * BLOCK + 5)
    async with session_scope(engine) as s:
        row = {"slide_id": p.slide_id, "y": 0, "size": 337, "read_level": 0, "mpp": 0.5}
        row |= {"tile_px": 336, "tissue_fraction": 0.9}
        await s.execute(insert(Tile), [{"id": tid, "x": tid, **row} for tid in ids])
        await add_revisions(
            s,
            [
                NewRevision(
                    tile_id=tid,
                    run_id=p.run_id,
                    stage="summarize",
                    text=f"caption {tid}",
                    provider="offline",
                    model="m",
                    template_name="summarize_v1",
                    template_hash="0" * 64,
                )
                for tid in ids
            ],
        )
    review = dict.fromkeys([*p.tile_ids, *ids], "unreviewed")
    async with session_scope(engine) as s:
        for n, tid in enumerate(ids[::4]):
            decision = "accept" if n % 3 else "reject"
            await record_review(s, run_id=p.run_id, tile_id=tid, decision=decision, reviewer="a")
            review[tid] = decision
    return p.run_id, sorted(review), review


async def test_go_to_a_deep_position_skips_at_most_one_block(engine: AsyncEngine) -> None:
    """With the counts the triggers keep, then with those the migration backfills."""
    run_id, all_ids, review = await _captioned_run(engine)
    await _check_jumps(engine, run_id, all_ids, review)
    await migrate.downgrade(engine, "0008")
    await migrate.upgrade(engine)
    await _check_jumps(engine, run_id, all_ids, review)


async def _check_jumps(
    engine: AsyncEngine, run_id: str, all_ids: list[int], review: dict[int, str]
) -> None:
    skipped: list[int] = []

    def offsets(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "curation_tiles" in statement and "OFFSET" in statement.upper():
            skipped.append(int(list(params)[-1]))

    event.listen(engine.sync_engine, "before_cursor_execute", offsets)
    try:
        for review_state in (None, "accept", "unreviewed"):
            ids = [t for t in all_ids if review_state is None or review[t] == review_state]
            for sort, ordered in (("id", ids), ("-id", ids[::-1])):
                n = len(ordered)
                for at in (1, 2, BLOCK, BLOCK + 1, n // 2, n - 3, n, n + 1, 10 * n):
                    q = GridQuery(review=review_state, sort=sort, at=at)
                    async with read_scope(engine) as s:
                        page = await grid_page(s, run_id, q, per_page=PER_PAGE)
                    where = (review_state, sort, at)
                    assert page.tile_ids == ordered[at - 1 : at - 1 + PER_PAGE], where
                    assert page.position == at and page.total == n, where
                    assert page.has_next == (at - 1 + PER_PAGE < n), where
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", offsets)
    assert len(all_ids) > 2 * BLOCK and skipped
    assert max(skipped) < BLOCK, f"skipped {max(skipped)} index entries"
