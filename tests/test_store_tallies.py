"""The tallies and the curation index that triggers keep agree with counting the rows."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs import queue
from pathgen.runs.queue import Completion, NewWork
from pathgen.store.captions import human_edit, record_review
from pathgen.store.engine import read_scope, session_scope
from pathgen.store.models import CaptionRevision, CurationTile, RunTally
from pathgen.web.grid import review_totals
from pathgen.web.queries import run_summaries
from tests.populate import populate


async def _work_done(engine: AsyncEngine, run_id: str) -> dict[str, int]:
    async with read_scope(engine) as s:
        rows = await s.execute(
            select(RunTally.key, RunTally.n).where(
                RunTally.run_id == run_id, RunTally.kind == "work_done"
            )
        )
        return {k: int(n) for k, n in rows if n}


async def test_queue_tallies_follow_claims_completions_and_requeues(engine: AsyncEngine) -> None:
    p = await populate(engine)
    async with session_scope(engine) as s:
        await queue.enqueue(s, p.run_id, [NewWork("describe", f"k{i}") for i in range(7)])
    claimed = await queue.claim(engine, owner="w1", stages=["describe"], limit=5, run_id=p.run_id)
    assert await _work_done(engine, p.run_id) == {}
    await queue.complete(engine, [Completion(c) for c in claimed[:4]])
    assert await _work_done(engine, p.run_id) == {"describe": 4}
    counted = await queue.counts(engine, p.run_id)
    async with read_scope(engine) as s:
        (summary,) = await run_summaries(s, p.run_id)
    row = next(r for r in summary.stages if r.stage == "describe")
    by = counted["describe"]
    assert (row.done, row.in_flight, row.queued) == (
        by.get("done", 0),
        by.get("leased", 0),
        by.get("queued", 0),
    )
    await queue.requeue_done(engine, p.run_id, ["describe"])
    assert await _work_done(engine, p.run_id) == {}


async def test_curation_index_and_review_tallies_follow_revisions_and_reviews(
    engine: AsyncEngine,
) -> None:
    p = await populate(engine)
    t0, t1, t2 = p.tile_ids[:3]
    async with session_scope(engine) as s:
        await record_review(
            s, run_id=p.run_id, tile_id=t0, decision="accept", reviewer="ana",
            revision_id=p.summarize_ids[0],
        )  # fmt: skip
        await record_review(
            s, run_id=p.run_id, tile_id=t0, decision="reject", reviewer="ben",
            revision_id=p.summarize_ids[0],
        )  # fmt: skip
        human = await human_edit(s, run_id=p.run_id, tile_id=t1, text="Better.", reviewer="ana")
    async with read_scope(engine) as s:
        totals = await review_totals(s, p.run_id)
        rows = {c.tile_id: c for c in await s.scalars(select(CurationTile))}
        captioned = await s.scalar(
            select(func.count(func.distinct(CaptionRevision.tile_id))).where(
                CaptionRevision.run_id == p.run_id
            )
        )
        (summary,) = await run_summaries(s, p.run_id)
    assert totals == {"unreviewed": len(p.tile_ids) - 2, "accept": 0, "edit": 1, "reject": 1}
    assert sum(totals.values()) == captioned == summary.captioned == len(rows)
    assert (rows[t0].review, rows[t0].reviewer) == ("reject", "ben")
    assert (rows[t1].final_revision_id, rows[t1].final_stage) == (human, "human")
    assert rows[t2].final_revision_id == p.summarize_ids[2]
    assert rows[t2].organ == "breast" and rows[t2].score == 0.3
    assert summary.selected == len(p.tile_ids)
    describe = next(r for r in summary.stages if r.stage == "describe")
    assert describe.revisions_ok == len(p.tile_ids)
    assert describe.input_tokens == 50 * len(p.tile_ids)
