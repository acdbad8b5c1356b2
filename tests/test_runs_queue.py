"""The database work queue: disjoint claims, leases, fencing, retries, parking."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, text, update

from pathgen.runs import queue
from pathgen.runs.queue import Completion, NewWork
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, WorkItem, utcnow


async def _run_with_items(engine, n: int, stage: str = "describe", max_attempts: int = 3) -> None:
    async with session_scope(engine) as s:
        s.add(Run(id="r", config={}, pathgen_version="t"))
        await s.flush()
        await queue.enqueue(
            s, "r", [NewWork(stage, f"k{i}") for i in range(n)], max_attempts=max_attempts
        )


async def test_enqueue_is_idempotent(engine) -> None:
    await _run_with_items(engine, 5)
    async with session_scope(engine) as s:
        await queue.enqueue(s, "r", [NewWork("describe", "k1"), NewWork("describe", "k9")])
    c = await queue.counts(engine, "r")
    assert c == {"describe": {"queued": 6}}


async def test_concurrent_claims_are_disjoint_and_all_done_once(engine) -> None:
    await _run_with_items(engine, 300)
    seen: list[int] = []

    async def worker(name: str) -> None:
        while items := await queue.claim(
            engine, owner=name, stages=["describe"], limit=7, run_id="r"
        ):
            seen.extend(i.id for i in items)
            assert all(await queue.complete(engine, [Completion(i) for i in items]))

    await asyncio.gather(*(worker(f"w{i}") for i in range(8)))
    assert len(seen) == 300 and len(set(seen)) == 300
    assert await queue.counts(engine, "r") == {"describe": {"done": 300}}


async def test_expired_lease_is_reclaimed_and_old_owner_is_fenced(engine) -> None:
    await _run_with_items(engine, 1)
    (a,) = await queue.claim(engine, owner="dead", stages=["describe"], limit=1, lease_s=60)
    assert await queue.claim(engine, owner="b", stages=["describe"], limit=1) == []
    async with session_scope(engine) as s:  # the lease runs out (the worker died)
        await s.execute(update(WorkItem).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert (await queue.counts(engine, "r"))["describe"] == {"queued": 1}
    (b,) = await queue.claim(engine, owner="b", stages=["describe"], limit=1)
    assert b.id == a.id and b.attempts == 2

    wrote: list[str] = []

    async def persist(session) -> None:
        wrote.append("x")

    assert await queue.complete(engine, [Completion(a, persist=persist)]) == [False]
    assert wrote == []
    assert await queue.complete(engine, [Completion(b, persist=persist)]) == [True]
    assert wrote == ["x"]


async def test_same_worker_reclaiming_its_own_expired_lease_is_fenced(engine) -> None:
    """A slow worker whose lease ran out and who claimed the item again (same worker id)
    gets only its newest claim's result stored, even when both finish in one batch."""
    await _run_with_items(engine, 1)
    (old,) = await queue.claim(engine, owner="w", stages=["describe"], limit=1, lease_s=60)
    async with session_scope(engine) as s:  # the lease runs out while "old" still works
        await s.execute(update(WorkItem).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    (new,) = await queue.claim(engine, owner="w", stages=["describe"], limit=1)
    assert new.id == old.id and new.owner != old.owner  # one lease token per claim
    assert await queue.heartbeat(engine, [old], lease_s=60) == 0
    assert await queue.heartbeat(engine, [old, new], lease_s=60) == 1

    wrote: list[int] = []

    def persist(attempt: int):  # noqa: ANN202
        async def write(session) -> None:
            wrote.append(attempt)

        return write

    done = await queue.complete(
        engine, [Completion(old, persist=persist(1)), Completion(new, persist=persist(2))]
    )
    assert done == [False, True]
    assert wrote == [2]
    assert await queue.fail(engine, old, "late failure") == "lost"


async def test_failures_retry_then_park_then_operator_retry(engine) -> None:
    await _run_with_items(engine, 1, max_attempts=2)
    (i1,) = await queue.claim(engine, owner="w", stages=["describe"], limit=1)
    assert await queue.fail(engine, i1, "HTTP 500", delay_s=0) == "queued"
    (i2,) = await queue.claim(engine, owner="w", stages=["describe"], limit=1)
    assert await queue.fail(engine, i2, "HTTP 500 again", delay_s=0) == "failed"
    assert await queue.claim(engine, owner="w", stages=["describe"], limit=1) == []
    async with session_scope(engine) as s:
        row = (await s.scalars(select(WorkItem))).one()
    assert row.status == "failed" and row.last_error == "HTTP 500 again" and row.attempts == 2

    assert await queue.retry_failed(engine, "r", "describe") == 1
    (i3,) = await queue.claim(engine, owner="w", stages=["describe"], limit=1)
    assert i3.attempts == 1


async def test_backoff_delays_the_retry(engine) -> None:
    await _run_with_items(engine, 1)
    (i1,) = await queue.claim(engine, owner="w", stages=["describe"], limit=1)
    await queue.fail(engine, i1, "429", delay_s=3600)
    assert await queue.claim(engine, owner="w", stages=["describe"], limit=1) == []


async def test_lease_expiring_on_last_attempt_is_parked(engine) -> None:
    await _run_with_items(engine, 1, max_attempts=1)
    await queue.claim(engine, owner="dead", stages=["describe"], limit=1)
    async with session_scope(engine) as s:
        await s.execute(update(WorkItem).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert await queue.claim(engine, owner="b", stages=["describe"], limit=1) == []
    async with session_scope(engine) as s:
        row = (await s.scalars(select(WorkItem))).one()
    assert row.status == "failed" and "lease expired" in row.last_error


async def test_release_and_heartbeat(engine) -> None:
    await _run_with_items(engine, 2)
    items = await queue.claim(engine, owner="w", stages=["describe"], limit=2, lease_s=5)
    assert await queue.heartbeat(engine, items, lease_s=600) == 2
    async with session_scope(engine) as s:
        exp = (await s.execute(text("SELECT min(lease_expires_at) FROM work_items"))).scalar()
    assert exp is not None
    assert await queue.release(engine, items) == 2
    again = await queue.claim(engine, owner="x", stages=["describe"], limit=2)
    assert [i.attempts for i in again] == [1, 1]


async def test_follow_up_work_is_enqueued_with_completion(engine) -> None:
    await _run_with_items(engine, 1, stage="tile")
    (item,) = await queue.claim(engine, owner="w", stages=["tile"], limit=1)
    await queue.complete(engine, [Completion(item, follow_up=[NewWork("embed", "s1")])])
    assert await queue.counts(engine, "r") == {"tile": {"done": 1}, "embed": {"queued": 1}}


async def test_a_batchs_rows_go_in_one_statement_and_only_for_held_leases(engine) -> None:
    from dataclasses import replace

    from sqlalchemy import event, insert

    from pathgen.store.bulk import Rows

    await _run_with_items(engine, 3)
    items = await queue.claim(engine, owner="w", stages=["describe"], limit=3)
    items[2] = replace(items[2], owner="w:stale")  # its lease is someone else's now
    add_run = insert(Run.__table__)
    statements: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    won = await queue.complete(
        engine,
        [
            Completion(
                i,
                rows=[Rows(add_run, [{"id": f"x{i.key}", "config": {}, "pathgen_version": "t"}])],
                result={"n": n},
            )
            for n, i in enumerate(items)
        ],
    )
    event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert won == [True, True, False]
    assert sum(s.startswith("INSERT INTO runs") for s in statements) == 1
    async with session_scope(engine) as s:
        runs = set(await s.scalars(select(Run.id).where(Run.id.startswith("x"))))
        results = dict((await s.execute(select(WorkItem.key, WorkItem.result))).all())
    assert runs == {"xk0", "xk1"}
    assert results == {"k0": {"n": 0}, "k1": {"n": 1}, "k2": None}


async def test_items_a_dead_worker_held_are_claimed_alone_so_one_poison_item_parks_alone(
    engine,
) -> None:
    """A slide that kills its worker every time, claimed ahead with 7 others: after the first
    crash each of the 8 gets a claim of its own, so the 7 finish on their second attempt and
    only the poison one is parked."""
    await _run_with_items(engine, 8, stage="tile")
    await _run_more(engine, 4)  # never leased: claimed in batches once the suspects are done
    batches: list[list[str]] = []

    async def crash(items: list) -> None:  # the worker dies: its leases run out
        async with session_scope(engine) as s:
            await s.execute(
                update(WorkItem)
                .where(WorkItem.id.in_([i.id for i in items]))
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )

    while items := await queue.claim(engine, owner="w", stages=["tile"], limit=8, run_id="r"):
        batches.append([i.key for i in items])
        if any(i.key == "k3" for i in items):
            await crash(items)
        else:
            assert all(await queue.complete(engine, [Completion(i) for i in items]))
    await queue.claim(engine, owner="w", stages=["tile"], limit=8, run_id="r")  # parks k3
    assert batches[0] == [f"k{i}" for i in range(8)]  # the first claim: 8 ahead, k3 among them
    # Then each suspect alone (k3 twice more: it is the first claimable each time), then
    # batches again.
    alone = [["k0"], ["k1"], ["k2"], ["k3"], ["k3"], ["k4"], ["k5"], ["k6"], ["k7"]]
    assert batches[1:] == [*alone, ["m0", "m1", "m2", "m3"]]
    async with session_scope(engine) as s:
        rows = dict((await s.execute(select(WorkItem.key, WorkItem.attempts))).all())
        status = dict((await s.execute(select(WorkItem.key, WorkItem.status))).all())
    assert {k: v for k, v in status.items() if v != "done"} == {"k3": "failed"}  # parked
    assert rows["k3"] == 3 and all(rows[f"k{i}"] == 2 for i in range(8) if i != 3)


async def _run_more(engine, n: int) -> None:
    async with session_scope(engine) as s:
        await queue.enqueue(s, "r", [NewWork("tile", f"m{i}") for i in range(n)])
