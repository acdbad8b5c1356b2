"""Caption revisions are append-only, on both backends, and survive concurrent writers."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from pathgen.errors import ImmutableRevisionError
from pathgen.store.engine import session_scope
from pathgen.store.models import CaptionRevision, Run, Slide, Tile
from pathgen.store.revisions import (
    NewRevision,
    append_revisions,
    revision_chain,
)


async def _seed(engine) -> int:
    async with session_scope(engine) as s:
        s.add(Run(id="r1", config={}, pathgen_version="test"))
        slide = Slide(path="/slides/a.svs")
        s.add(slide)
        await s.flush()
        tile = Tile(
            slide_id=slide.id,
            x=0,
            y=0,
            size=672,
            read_level=0,
            mpp=0.5,
            tile_px=336,
            tissue_fraction=1.0,
        )
        s.add(tile)
        await s.flush()
        return tile.id


def _rev(tile_id: int, text_: str, parent: int | None = None, stage: str = "describe"):
    return NewRevision(
        tile_id=tile_id,
        run_id="r1",
        stage=stage,
        text=text_,
        provider="offline",
        model="m",
        parent_id=parent,
        template_name="describe_v1",
        template_hash="abc",
        params={"temperature": 0.2},
        input_tokens=10,
        output_tokens=20,
        latency_s=0.5,
        cost=0.001,
    )


async def _text_of(engine, rev_id: int) -> str:
    async with session_scope(engine) as s:
        return (await s.get(CaptionRevision, rev_id)).text


async def test_orm_refuses_update_and_delete(engine) -> None:
    tile = await _seed(engine)
    (rev_id,) = await append_revisions(engine, [_rev(tile, "original text")])

    # Through the ORM: a modified or deleted revision is refused at flush.
    with pytest.raises(ImmutableRevisionError, match="append-only"):
        async with session_scope(engine) as s:
            (await s.get(CaptionRevision, rev_id)).text = "changed"
    with pytest.raises(ImmutableRevisionError, match="new revision"):
        async with session_scope(engine) as s:
            await s.delete(await s.get(CaptionRevision, rev_id))
    assert await _text_of(engine, rev_id) == "original text"


async def test_database_triggers_refuse_raw_sql(engine) -> None:
    tile = await _seed(engine)
    (rev_id,) = await append_revisions(engine, [_rev(tile, "kept")])
    for stmt in (
        update(CaptionRevision).where(CaptionRevision.id == rev_id).values(text="x"),
        delete(CaptionRevision).where(CaptionRevision.id == rev_id),
    ):
        with pytest.raises((DBAPIError, IntegrityError), match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(stmt)
    assert await _text_of(engine, rev_id) == "kept"


async def test_correction_is_a_new_revision_with_a_chain(engine) -> None:
    tile = await _seed(engine)
    (a,) = await append_revisions(engine, [_rev(tile, "first")])
    (b,) = await append_revisions(engine, [_rev(tile, "revised", parent=a, stage="revise")])
    (c,) = await append_revisions(engine, [_rev(tile, "human fix", parent=b, stage="human")])
    async with session_scope(engine) as s:
        chain = await revision_chain(s, c)
    assert [r.text for r in chain] == ["first", "revised", "human fix"]
    assert [r.stage for r in chain] == ["describe", "revise", "human"]
    assert chain[0].params == {"temperature": 0.2} and chain[0].template_hash == "abc"


async def test_ten_thousand_revisions_from_eight_tasks(engine) -> None:
    tile = await _seed(engine)
    per_task, batch = 1250, 50

    async def writer(task: int) -> list[list[int]]:
        batches: list[list[int]] = []
        parents: list[int | None] = [None] * batch
        for b in range(per_task // batch):
            revs = [_rev(tile, f"t{task}-b{b}-i{i}", parent=parents[i]) for i in range(batch)]
            ids = await append_revisions(engine, revs)
            batches.append(ids)
            parents = list(ids)
        return batches

    results = await asyncio.gather(*(writer(t) for t in range(8)))

    async with session_scope(engine) as s:
        rows = {r.id: r for r in await s.scalars(select(CaptionRevision))}
    assert len(rows) == 8 * per_task
    for task, batches in enumerate(results):
        for b, ids in enumerate(batches):
            for i, rid in enumerate(ids):
                row = rows[rid]
                assert row.text == f"t{task}-b{b}-i{i}"
                assert row.parent_id == (batches[b - 1][i] if b else None)
