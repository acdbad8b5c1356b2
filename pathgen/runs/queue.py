"""The work queue in the database: leases, heartbeats, retries, exactly-once completion.

Postgres claims with ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite relies on its
single writer (every transaction is ``BEGIN IMMEDIATE``, WAL mode) and keeps each
claim transaction short. A completion commits the stage's results and marks the
item done in ONE transaction, and only while the worker still holds the lease
(fencing), so a worker that lost its lease can never write a duplicate result.

Example::

    items = await claim(engine, owner="w1", run_id="r", stages=["describe"], limit=8)
    await complete(engine, [Completion(items[0], persist=write_results)])
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pathgen.store.bulk import Rows, write_rows
from pathgen.store.engine import read_scope, session_scope
from pathgen.store.models import WorkItem, utcnow
from pathgen.store.outage import rides_out_outages
from pathgen.store.revisions import NewRevision, add_revisions

Persist = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class NewWork:
    stage: str
    key: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    id: int
    run_id: str
    stage: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    #: The lease token: the worker's id plus a nonce per claim, so a worker whose lease ran
    #: out and who claimed the item again cannot complete it twice.
    owner: str
    #: What the claim's ``read`` found for this item (None without one).
    inputs: Any = field(default=None, compare=False, repr=False)


#: Reads, in the claim's transaction, what claimed items need: ``{item id: inputs}``.
ClaimRead = Callable[[AsyncSession, Sequence[Claimed]], Awaitable[Mapping[int, Any]]]


@dataclass
class Completion:
    """A finished item plus what to write with it (run inside the completion transaction)."""

    item: Claimed
    persist: Persist | None = None
    follow_up: list[NewWork] = field(default_factory=list)
    result: dict[str, Any] | None = None
    #: The item made a new output: its follow-up items run again even if they were done
    #: (their input changed). False when an existing output was reused.
    new_output: bool = True
    #: Caption revisions to insert: those of a whole completion batch go in one statement.
    revisions: list[NewRevision] = field(default_factory=list)
    #: Rows to write (after ``persist``): one statement per batch for each statement.
    rows: list[Rows] = field(default_factory=list)


def _insert_for(session: AsyncSession) -> Any:
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


async def enqueue(
    session: AsyncSession,
    run_id: str,
    work: Iterable[NewWork],
    *,
    max_attempts: int = 3,
    requeue_finished: bool = False,
) -> int:
    """Add work items, ignoring those already queued (same run, stage, key). Returns rows sent.

    ``requeue_finished`` also queues again existing items that are done or parked (their
    input changed, e.g. a stage was redone upstream).
    """
    work = list(work)
    now = utcnow()
    rows = [
        {
            "run_id": run_id,
            "stage": w.stage,
            "key": w.key,
            "payload": w.payload,
            "status": "queued",
            "attempts": 0,
            "max_attempts": max_attempts,
            "available_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for w in work
    ]
    if not rows:
        return 0
    insert = _insert_for(session)
    table = WorkItem.__table__  # Core, not the ORM's bulk path: less CPU per row
    stmt = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["run_id", "stage", "key"])
        .returning(table.c.id)
    )
    inserted = len((await session.execute(stmt, rows)).all())
    if requeue_finished and inserted != len(rows):  # some existed: queue finished ones again
        by_stage: dict[str, list[str]] = {}
        for w in work:
            by_stage.setdefault(w.stage, []).append(w.key)
        for stage, keys in by_stage.items():
            await session.execute(
                update(WorkItem)
                .where(
                    WorkItem.run_id == run_id,
                    WorkItem.stage == stage,
                    WorkItem.key.in_(keys),
                    WorkItem.status.in_(("done", "failed")),
                )
                .values(
                    status="queued",
                    attempts=0,
                    available_at=now,
                    updated_at=now,
                    done_at=None,
                    last_error=None,
                )
            )
    return len(rows)


def _claimable(run_id: str | None, stages: Sequence[str], now: datetime) -> Any:
    cond = and_(
        WorkItem.stage.in_(stages),
        WorkItem.available_at <= now,
        or_(
            WorkItem.status == "queued",
            and_(WorkItem.status == "leased", WorkItem.lease_expires_at < now),
        ),
        WorkItem.attempts < WorkItem.max_attempts,
    )
    return and_(cond, WorkItem.run_id == run_id) if run_id is not None else cond


async def _park_exhausted(session: AsyncSession, run_id: str | None, now: datetime) -> None:
    """Leases that expired on their last attempt: the worker died every time. Park them."""
    cond = and_(
        WorkItem.status == "leased",
        WorkItem.lease_expires_at < now,
        WorkItem.attempts >= WorkItem.max_attempts,
    )
    if run_id is not None:
        cond = and_(cond, WorkItem.run_id == run_id)
    await session.execute(
        update(WorkItem)
        .where(cond)
        .values(
            status="failed",
            lease_owner=None,
            updated_at=now,
            last_error=func.coalesce(WorkItem.last_error, "lease expired: the worker died")
            + " (gave up after the last attempt's lease expired)",
        )
    )


@rides_out_outages("claim")
async def claim(
    engine: AsyncEngine,
    *,
    owner: str,
    stages: Sequence[str],
    limit: int,
    run_id: str | None = None,
    lease_s: float = 120.0,
    exclude_runs: Sequence[str] = (),
    read: ClaimRead | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` items of ``stages`` (expired leases are reclaimed automatically),
    not of the runs in ``exclude_runs``; ``read`` fills each item's ``inputs`` in the same
    transaction.

    An item whose lease ran out (its worker died holding it) is claimed alone: one of the
    items a dead worker held may be what killed it, and the others should not share its
    fate again. Once each has had a turn of its own, batches resume.
    """
    if limit <= 0 or not stages:
        return []
    now = utcnow()
    lease = f"{owner}:{secrets.token_hex(4)}"  # fences this claim, even from its own worker
    async with session_scope(engine) as session:
        cond = _claimable(run_id, stages, now)
        if exclude_runs:
            cond = and_(cond, WorkItem.run_id.not_in(list(exclude_runs)))
        candidates = (
            select(WorkItem.id, WorkItem.status).where(cond).order_by(WorkItem.id).limit(limit)
        )
        if session.bind.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = _alone_if_suspect((await session.execute(candidates)).all())
        stmt = (
            update(WorkItem)
            .where(WorkItem.id.in_(ids))
            .values(
                status="leased",
                lease_owner=lease,
                lease_expires_at=now + timedelta(seconds=lease_s),
                heartbeat_at=now,
                attempts=WorkItem.attempts + 1,
                updated_at=now,
            )
            .returning(
                WorkItem.id,
                WorkItem.run_id,
                WorkItem.stage,
                WorkItem.key,
                WorkItem.payload,
                WorkItem.attempts,
                WorkItem.max_attempts,
            )
        )
        rows = (await session.execute(stmt)).all() if ids else []
        if not rows:  # nothing claimable: park items whose last lease ran out
            await _park_exhausted(session, run_id, now)
        items = sorted(
            (
                Claimed(
                    r.id,
                    r.run_id,
                    r.stage,
                    r.key,
                    r.payload or {},
                    r.attempts,
                    r.max_attempts,
                    lease,
                )
                for r in rows
            ),
            key=lambda c: c.id,
        )
        if read is not None and items:
            found = await read(session, items)
            items = [replace(c, inputs=found.get(c.id)) for c in items]
    return items


def _alone_if_suspect(candidates: Sequence[Any]) -> list[int]:
    """The ids to lease from ``candidates`` (id order): the first alone if its lease ran out
    (status still ``leased``), else those before the first such item."""
    if candidates and candidates[0].status == "leased":
        return [candidates[0].id]
    ids = []
    for row in candidates:
        if row.status == "leased":
            break
        ids.append(row.id)
    return ids


def _held(item: Claimed) -> Any:
    return and_(
        WorkItem.id == item.id, WorkItem.status == "leased", WorkItem.lease_owner == item.owner
    )


@rides_out_outages("complete")
async def complete(engine: AsyncEngine, completions: Sequence[Completion]) -> list[bool]:
    """Commit results and mark items done in one transaction; False where the lease was lost."""
    if not completions:
        return []
    now = utcnow()
    values = {
        "status": "done",
        "done_at": now,
        "updated_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": None,
    }
    async with session_scope(engine) as session:
        won = await _mark_done(session, completions, values)
        follow: dict[tuple[str, bool], list[NewWork]] = {}
        persisted: set[tuple[int, str]] = set()
        revisions: list[NewRevision] = []
        results: list[dict[str, Any]] = []
        rows: list[Rows] = []
        for c in completions:
            key = (c.item.id, c.item.owner)
            if key not in won or key in persisted:
                continue
            persisted.add(key)
            if c.persist is not None:
                await c.persist(session)
            if c.result is not None:
                results.append({"b_id": c.item.id, "result": c.result})
            rows += c.rows
            revisions += c.revisions
            follow.setdefault((c.item.run_id, c.new_output), []).extend(c.follow_up)
        if results:  # the items are ours now (marked done above): no fencing needed
            await session.execute(_SET_RESULT, results)
        await write_rows(session, rows)
        await add_revisions(session, revisions)
        for (run_id, new_output), work in follow.items():
            await enqueue(
                session,
                run_id,
                work,
                max_attempts=completions[0].item.max_attempts,
                requeue_finished=new_output,
            )
    return [(c.item.id, c.item.owner) in won for c in completions]


_items = WorkItem.__table__
_SET_RESULT = update(_items).where(_items.c.id == bindparam("b_id"))


async def _mark_done(
    session: AsyncSession, completions: Sequence[Completion], values: dict[str, Any]
) -> set[tuple[int, str]]:
    """Mark the completions' items done where their lease is still held; returns the
    ``(id, lease)`` of those."""
    ids = [c.item.id for c in completions]
    if len(set(ids)) == len(ids):  # one statement for the batch (Core: less CPU per call)
        res = await session.execute(
            update(_items)
            .where(
                tuple_(_items.c.id, _items.c.lease_owner).in_(
                    [(c.item.id, c.item.owner) for c in completions]
                ),
                _items.c.status == "leased",
            )
            .values(**values)
            .returning(_items.c.id)
        )
        done = set(res.scalars())
        return {(c.item.id, c.item.owner) for c in completions if c.item.id in done}
    won: set[tuple[int, str]] = set()
    for c in completions:  # the same item twice (two leases): each under its own fence
        res = await session.execute(
            update(WorkItem).where(_held(c.item)).values(**values).returning(WorkItem.id)
        )
        won.update((item_id, c.item.owner) for item_id in res.scalars())
    return won


def backoff_s(attempt: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter for a failed attempt."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


@rides_out_outages("fail")
async def fail(
    engine: AsyncEngine,
    item: Claimed,
    error: str,
    *,
    retry: bool = True,
    delay_s: float | None = None,
    persist_if_parked: Persist | None = None,
) -> str:
    """Record a failed attempt: requeue with backoff, or park as failed after the last attempt.

    ``persist_if_parked`` runs in the same transaction when the item is parked (e.g. to
    store a failed revision with the error). Returns the new status ("queued", "failed",
    or "lost" if the lease was no longer held).
    """
    now = utcnow()
    final = not retry or item.attempts >= item.max_attempts
    delay = backoff_s(item.attempts) if delay_s is None else delay_s
    values: dict[str, Any] = {
        "status": "failed" if final else "queued",
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": error[:4000],
        "updated_at": now,
    }
    if not final:
        values["available_at"] = now + timedelta(seconds=delay)
    async with session_scope(engine) as session:
        res = await session.execute(
            update(WorkItem).where(_held(item)).values(**values).returning(WorkItem.id)
        )
        if res.first() is None:
            return "lost"
        if final and persist_if_parked is not None:
            await persist_if_parked(session)
    return values["status"]


async def _update_held(engine: AsyncEngine, items: Sequence[Claimed], **values: Any) -> int:
    """Update the items whose leases (each claim's own token) are still held."""
    if not items:
        return 0
    async with session_scope(engine) as session:
        res = await session.execute(
            update(WorkItem)
            .where(
                tuple_(WorkItem.id, WorkItem.lease_owner).in_([(i.id, i.owner) for i in items]),
                WorkItem.status == "leased",
            )
            .values(**values)
            .returning(WorkItem.id)
        )
        return len(res.all())


async def heartbeat(engine: AsyncEngine, items: Sequence[Claimed], lease_s: float) -> int:
    """Extend the leases this worker still holds; returns how many it holds."""
    now = utcnow()
    return await _update_held(
        engine, items, heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_s)
    )


@rides_out_outages("release")
async def release(engine: AsyncEngine, items: Sequence[Claimed]) -> int:
    """Give leases back without counting the attempt (graceful shutdown)."""
    return await _update_held(
        engine,
        items,
        status="queued",
        lease_owner=None,
        lease_expires_at=None,
        updated_at=utcnow(),
        attempts=WorkItem.attempts - 1,
    )


@rides_out_outages("pause")
async def pause_stage(
    engine: AsyncEngine, run_id: str, stage: str, message: str, *, held: Claimed | None = None
) -> int:
    """Park ``stage``'s queued items of ``run_id`` as ``paused`` with ``message`` (and
    ``held``, if its lease is still held, with its attempt given back). ``pathgen retry``
    (:func:`retry_failed`) queues them again. Returns the items paused."""
    now = utcnow()
    values: dict[str, Any] = {"status": "paused", "last_error": message[:4000], "updated_at": now}
    async with session_scope(engine) as session:
        n = 0
        if held is not None:
            res = await session.execute(
                update(WorkItem)
                .where(_held(held))
                .values(
                    **values,
                    lease_owner=None,
                    lease_expires_at=None,
                    attempts=WorkItem.attempts - 1,
                )
                .returning(WorkItem.id)
            )
            n += len(res.all())
        res = await session.execute(
            update(WorkItem)
            .where(WorkItem.run_id == run_id, WorkItem.stage == stage, WorkItem.status == "queued")
            .values(**values)
            .returning(WorkItem.id)
        )
        return n + len(res.all())


async def retry_failed(
    engine: AsyncEngine, run_id: str, stage: str | None = None, *, keys: Sequence[str] = ()
) -> int:
    """Requeue a run's failed and paused items (optionally of one stage, and only those
    ``keys``) with fresh attempts."""
    now = utcnow()
    cond = and_(WorkItem.run_id == run_id, WorkItem.status.in_(("failed", "paused")))
    if stage is not None:
        cond = and_(cond, WorkItem.stage == stage)
    if keys:
        cond = and_(cond, WorkItem.key.in_(list(keys)))
    async with session_scope(engine) as session:
        res = await session.execute(
            update(WorkItem)
            .where(cond)
            .values(status="queued", attempts=0, available_at=now, updated_at=now)
            .returning(WorkItem.id)
        )
        return len(res.all())


@rides_out_outages("counts")
async def counts(engine: AsyncEngine, run_id: str) -> dict[str, dict[str, int]]:
    """``{stage: {status: n}}`` for a run; an expired lease counts as queued."""
    async with read_scope(engine) as session:
        return (await status_counts(session, [run_id])).get(run_id, {})


async def status_counts(
    session: AsyncSession, run_ids: Sequence[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """``{run_id: {stage: {status: n}}}``; an expired lease counts as queued."""
    expired = and_(WorkItem.status == "leased", WorkItem.lease_expires_at < utcnow())
    rows = await session.execute(
        select(WorkItem.run_id, WorkItem.stage, WorkItem.status, expired, func.count())
        .where(WorkItem.run_id.in_(list(run_ids)))
        .group_by(WorkItem.run_id, WorkItem.stage, WorkItem.status, expired)
    )
    out: dict[str, dict[str, dict[str, int]]] = {}
    for run_id, stage, status, is_expired, n in rows:
        key = "queued" if status == "leased" and is_expired else status
        bucket = out.setdefault(run_id, {}).setdefault(stage, {})
        bucket[key] = bucket.get(key, 0) + n
    return out


async def recent_done(session: AsyncSession, run_id: str, window_s: float) -> dict[str, int]:
    """``{stage: items}`` of ``run_id`` finished in the last ``window_s`` seconds."""
    since = utcnow() - timedelta(seconds=window_s)
    rows = await session.execute(
        select(WorkItem.stage, func.count())
        .where(WorkItem.run_id == run_id, WorkItem.status == "done", WorkItem.done_at >= since)
        .group_by(WorkItem.stage)
    )
    return {stage: n for stage, n in rows}


async def requeue_done(
    engine: AsyncEngine,
    run_id: str,
    stages: Sequence[str],
    *,
    force: bool = False,
    payload: dict[str, Any] | None = None,
) -> int:
    """Queue a run's finished items of ``stages`` again (``force``: make new outputs even
    where an output with the same model and prompt exists; ``payload`` is added to theirs)."""
    now = utcnow()
    total = 0
    async with session_scope(engine) as session:
        rows = (
            await session.execute(
                select(WorkItem.id, WorkItem.payload).where(
                    WorkItem.run_id == run_id,
                    WorkItem.stage.in_(stages),
                    WorkItem.status.in_(("done", "failed")),
                )
            )
        ).all()
        for item_id, old_payload in rows:
            new_payload = {**(old_payload or {}), "force": force, **(payload or {})}
            await session.execute(
                update(WorkItem)
                .where(WorkItem.id == item_id)
                .values(
                    status="queued",
                    attempts=0,
                    available_at=now,
                    updated_at=now,
                    done_at=None,
                    payload=new_payload,
                    last_error=None,
                )
            )
            total += 1
    return total
