"""Worker beats: each worker's provider calls in flight, per run and stage.

A worker rewrites its rows about every second (:func:`publish`) and deletes them when it
stops (:func:`clear`); readers add up the rows updated within ``fresh_s``
(:func:`calls_in_flight`), so a worker that died stops counting on its own.

Example::

    await publish(engine, owner, lambda: {("run-1", "describe"): 250})
    async with read_scope(engine) as session:
        await calls_in_flight(session, "run-1")  # {"describe": 250}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pathgen.store.engine import session_scope
from pathgen.store.models import WorkerBeat, utcnow

#: Rows older than this are a stopped or dead worker's.
FRESH_S = 5.0


async def publish(
    engine: AsyncEngine, owner: str, count: Callable[[], Mapping[tuple[str, str], int]]
) -> dict[tuple[str, str], int]:
    """Write ``owner``'s calls in flight per ``(run_id, stage)``, counted by ``count`` once
    the transaction holds the write lock (a beat waiting behind other writers does not
    write an old figure); returns what was written."""
    async with session_scope(engine) as session:
        await session.connection()  # BEGIN (IMMEDIATE on SQLite): the lock is ours now
        calls = dict(count())
        if not calls:
            return calls
        now = utcnow()
        rows = [
            {"owner": owner, "run_id": run, "stage": stage, "calls_in_flight": n, "updated_at": now}
            for (run, stage), n in calls.items()
        ]
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(WorkerBeat).values(rows)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["owner", "run_id", "stage"],
                set_={
                    "calls_in_flight": stmt.excluded.calls_in_flight,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )
    return calls


async def clear(engine: AsyncEngine, owner: str) -> None:
    """Delete ``owner``'s rows (the worker stops)."""
    async with session_scope(engine) as session:
        await session.execute(delete(WorkerBeat).where(WorkerBeat.owner == owner))


async def calls_in_flight(
    session: AsyncSession, run_id: str, fresh_s: float = FRESH_S
) -> dict[str, int]:
    """The run's provider calls in flight per stage, over the workers that beat lately."""
    since = utcnow() - timedelta(seconds=fresh_s)
    rows = await session.execute(
        select(WorkerBeat.stage, func.sum(WorkerBeat.calls_in_flight))
        .where(WorkerBeat.run_id == run_id, WorkerBeat.updated_at >= since)
        .group_by(WorkerBeat.stage)
    )
    return {stage: int(n or 0) for stage, n in rows}
