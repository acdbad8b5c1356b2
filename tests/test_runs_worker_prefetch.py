"""A stage may claim items ahead of its concurrency (one claim transaction for several
items) and read their inputs inside that claim; prefetched items wait their turn and a
stop gives them back unspent."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from pathgen.runs import queue
from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.worker import StageHandler, Worker
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, WorkItem


async def _items(engine, n: int) -> None:
    async with session_scope(engine) as s:
        s.add(Run(id="r", config={}, pathgen_version="t"))
        await s.flush()
        await queue.enqueue(s, "r", [NewWork("tile", f"k{i}") for i in range(n)])


async def _statuses(session, items) -> dict[int, str]:
    rows = await session.execute(
        select(WorkItem.id, WorkItem.status).where(WorkItem.id.in_([i.id for i in items]))
    )
    return dict(rows.all())


async def test_a_claim_reads_its_items_inputs_in_its_own_transaction(engine) -> None:
    await _items(engine, 3)
    items = await queue.claim(
        engine, owner="w", stages=["tile"], limit=2, run_id="r", read=_statuses
    )
    assert [i.inputs for i in items] == ["leased", "leased"]  # seen inside the claim
    assert await queue.counts(engine, "r") == {"tile": {"leased": 2, "queued": 1}}


async def test_prefetched_items_share_a_claim_and_run_one_at_a_time(engine) -> None:
    await _items(engine, 8)
    running, most, tokens = 0, 0, []

    async def handle(item: Claimed, inputs: object) -> Completion:
        nonlocal running, most
        assert inputs == "leased"
        running += 1
        most = max(most, running)
        tokens.append(item.owner)
        await asyncio.sleep(0.01)
        running -= 1
        return Completion(item)

    stage = StageHandler("tile", 1, handle, read=_statuses, prefetch=3)
    stats = await asyncio.wait_for(
        Worker(engine, [stage], run_id="r", exit_when_idle=True).run(), 30
    )
    assert stats.done == 8 and most == 1
    assert len(set(tokens)) == 3  # claims of 4, 3 and 1 items, not 8 claims
    assert await queue.counts(engine, "r") == {"tile": {"done": 8}}


async def test_a_stop_gives_prefetched_items_back_unspent(engine) -> None:
    await _items(engine, 4)
    stop = asyncio.Event()
    handled = []

    async def handle(item: Claimed, _inputs: object) -> Completion:
        handled.append(item.key)
        stop.set()  # e.g. SIGTERM while the first item runs
        await asyncio.sleep(0.05)
        return Completion(item)

    stage = StageHandler("tile", 1, handle, prefetch=3)
    worker = Worker(engine, [stage], run_id="r", stop=stop, grace_s=10)
    stats = await asyncio.wait_for(worker.run(), 30)
    assert handled == ["k0"] and (stats.done, stats.released) == (1, 3)
    async with session_scope(engine) as s:
        rows = (await s.execute(select(WorkItem.key, WorkItem.status, WorkItem.attempts))).all()
    assert sorted(rows) == [("k0", "done", 1), ("k1", "queued", 0), ("k2", "queued", 0)] + [
        ("k3", "queued", 0)
    ]


async def test_completions_wait_for_each_other_up_to_commit_wait(engine) -> None:
    await _items(engine, 4)

    async def handle(item: Claimed, _inputs: object) -> Completion:
        await asyncio.sleep(0.06)  # longer than the buffer's tick
        return Completion(item)

    async def done_at(wait_s: float) -> set:
        stage = StageHandler("tile", 1, handle, prefetch=3, commit_wait_s=wait_s)
        await asyncio.wait_for(Worker(engine, [stage], run_id="r", exit_when_idle=True).run(), 30)
        async with session_scope(engine) as s:
            moments = set(await s.scalars(select(WorkItem.done_at)))
        await queue.requeue_done(engine, "r", ["tile"])
        return moments

    assert len(await done_at(5.0)) == 1  # one completion transaction for the four
    assert len(await done_at(0.0)) > 1
