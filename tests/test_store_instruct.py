"""Instruct items are append-only (API, ORM, database triggers); edits and reviews chain."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from pathgen.errors import ImmutableRevisionError, StoreError
from pathgen.store.engine import session_scope
from pathgen.store.instruct import (
    NewInstructItem,
    append_items,
    current_items,
    edit_item,
    latest_item_reviews,
    review_item,
)
from pathgen.store.models import InstructItem, Run, Slide, Tile
from pathgen.store.revisions import NewRevision, append_revisions


async def _seed(engine) -> tuple[int, int]:
    async with session_scope(engine) as s:
        s.add(Run(id="r1", config={}, pathgen_version="test"))
        slide = Slide(path="/slides/a.svs")
        s.add(slide)
        await s.flush()
        tile = Tile(
            slide_id=slide.id, x=0, y=0, size=672, read_level=0, mpp=0.5, tile_px=336,
            tissue_fraction=1.0,
        )  # fmt: skip
        s.add(tile)
        await s.flush()
        tile_id = tile.id
    (rev,) = await append_revisions(
        engine,
        [
            NewRevision(
                tile_id=tile_id, run_id="r1", stage="revise", text="d", provider="o", model="m"
            )
        ],
    )
    return tile_id, rev


def _item(tile_id: int, rev: int, answer: str = "Yes") -> NewInstructItem:
    return NewInstructItem(
        run_id="r1",
        tile_id=tile_id,
        revision_id=rev,
        kind="yesno",
        turns=[{"question": "Is necrosis present?", "answer": answer, "kind": "yesno"}],
        provider="offline",
        model="templates",
        template_name="instruct_templates_v1",
        template_hash="abc",
        input_tokens=3,
        cost=0.5,
        verify_status="passed",
        verifier="rules",
    )


async def test_orm_and_triggers_refuse_changes(engine) -> None:
    tile, rev = await _seed(engine)
    (item_id,) = await append_items(engine, [_item(tile, rev)])
    with pytest.raises(ImmutableRevisionError, match="append-only"):
        async with session_scope(engine) as s:
            (await s.get(InstructItem, item_id)).verify_status = "failed"
    with pytest.raises(ImmutableRevisionError, match="new item"):
        async with session_scope(engine) as s:
            await s.delete(await s.get(InstructItem, item_id))
    for stmt in (
        update(InstructItem).where(InstructItem.id == item_id).values(turns=[]),
        delete(InstructItem).where(InstructItem.id == item_id),
    ):
        with pytest.raises((DBAPIError, IntegrityError), match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(stmt)
    async with session_scope(engine) as s:
        stored = await s.get(InstructItem, item_id)
        assert stored.turns[0]["answer"] == "Yes" and stored.cost == 0.5
        assert stored.revision_id == rev and stored.template_hash == "abc"


async def test_edit_is_a_new_item_and_reviews_are_recorded(engine) -> None:
    tile, rev = await _seed(engine)
    a, b = await append_items(engine, [_item(tile, rev), _item(tile, rev, "No")])
    turns = [{"question": "Is necrosis present?", "answer": "No", "kind": "yesno"}]
    async with session_scope(engine) as s:
        new = await edit_item(s, item_id=a, turns=turns, reviewer="ana")
        await review_item(s, item_id=b, decision="reject", reviewer="ana", note="wrong")
    async with session_scope(engine) as s:
        current = await current_items(s, "r1")
        reviews = await latest_item_reviews(s, "r1")
    assert [i.id for i in current] == [b, new]
    assert current[1].parent_id == a and current[1].provider == "human"
    assert reviews[b].decision == "reject" and reviews[new].decision == "edit"
    with pytest.raises(StoreError, match="decision"):
        async with session_scope(engine) as s:
            await review_item(s, item_id=b, decision="maybe", reviewer="ana")
    with pytest.raises(StoreError, match="kind"):
        bad = _item(tile, rev)
        bad.kind = "essay"
        await append_items(engine, [bad])
