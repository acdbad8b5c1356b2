"""Selection rounds in the store: a re-selection's dropped tiles leave the dataset, on both
backends, and earlier rounds stay readable."""

from __future__ import annotations

from sqlalchemy import select

from pathgen.eval.selection import SelectionSpec
from pathgen.runs.reselect import start_round
from pathgen.settings import Settings
from pathgen.store.captions import final_captions
from pathgen.store.engine import session_scope
from pathgen.store.models import Selection, WorkItem
from pathgen.store.selections import current_round, round_tiles, rounds
from pathgen.web.queries import run_summaries
from tests.populate import RUN_ID, populate


async def test_a_reselection_round_replaces_the_current_selection(engine) -> None:
    pop = await populate(engine)
    async with session_scope(engine) as s:
        s.add(WorkItem(run_id=RUN_ID, stage="embed", key=str(pop.slide_id), status="done"))
        assert set(await final_captions(s, RUN_ID)) == set(pop.tile_ids)
        assert await current_round(s, RUN_ID) == 0

    new = Settings.model_validate({"model": {"name": "tiny_clip", "pretrained": "new.pt"}})
    round_no, requeued = await start_round(engine, RUN_ID, {"model": {"name": "old"}}, new)
    assert (round_no, requeued) == (1, 1)
    async with session_scope(engine) as s:
        item = await s.scalar(select(WorkItem).where(WorkItem.stage == "embed"))
        assert item.status == "queued" and item.payload["reselect"] == 1
        assert (await rounds(s, RUN_ID))[0]["model"] == {"name": "old"}
        assert (await rounds(s, RUN_ID))[1]["model"]["pretrained"] == "new.pt"
        # until the slide is selected again, its round-0 selection is the current one
        assert set(await final_captions(s, RUN_ID)) == set(pop.tile_ids)
        keep = pop.tile_ids[:2] + [pop.tile_ids[4]]
        s.add_all(
            Selection(run_id=RUN_ID, round=1, tile_id=t, kept=t in keep, reasons=["cluster"])
            for t in pop.tile_ids[:5]
        )
    async with session_scope(engine) as s:
        assert set(await final_captions(s, RUN_ID)) == set(keep)
        assert set(await round_tiles(s, RUN_ID, None)) == set(keep)
        assert set(await round_tiles(s, RUN_ID, 0)) == set(pop.tile_ids)
        (summary,) = await run_summaries(s, RUN_ID)
        assert summary.selected == len(keep)


def test_selection_specs() -> None:
    assert SelectionSpec.parse("r") == SelectionSpec("r", None)
    assert SelectionSpec.parse("r@latest") == SelectionSpec("r", None)
    assert SelectionSpec.parse("r@2") == SelectionSpec("r", 2)
    assert str(SelectionSpec("r", 0)) == "r@0"
