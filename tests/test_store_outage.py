"""Transient database errors are waited out; real errors are not."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from pathgen.runs import queue
from pathgen.runs.queue import Completion, NewWork
from pathgen.store import engine as engine_module
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import Run
from pathgen.store.outage import has_connected, is_transient, ride_out


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _wrapped(orig: BaseException) -> OperationalError:
    return OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (ConnectionResetError(), True),
        (_wrapped(sqlite3.OperationalError("database is locked")), True),
        (_wrapped(_PgError("57P03")), True),  # the database system is starting up
        (_wrapped(_PgError("08006")), True),  # connection failure
        (_PgError("53300"), True),  # too many connections
        (IntegrityError("INSERT", {}, _PgError("23505")), False),  # unique violation
        (_wrapped(sqlite3.OperationalError("no such table: runs")), False),
        (ValueError("bad value"), False),
    ],
)
def test_transient_errors_are_told_apart(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.fixture
async def reached(tmp_path):  # noqa: ANN201
    """An engine that has connected once: its later connection errors are outages."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'reached.db'}")
    async with engine.connect():
        pass
    assert has_connected(engine)
    yield engine
    await engine.dispose()


async def test_ride_out_waits_for_the_database_and_logs_once(reached, caplog) -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset by peer")
        return "ok"

    with caplog.at_level(logging.WARNING, logger="pathgen.store.outage"):
        assert await ride_out(reached, "test", flaky) == "ok"
    assert len(calls) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "database unavailable (test: ConnectionResetError" in messages[0]
    assert messages[1].startswith("database back after")


async def test_a_database_never_reached_fails_at_once(reached, tmp_path) -> None:
    fresh = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    assert not has_connected(fresh)  # another engine having connected does not count
    calls = []

    async def down() -> None:
        calls.append(1)
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        await ride_out(fresh, "test", down)
    assert len(calls) == 1
    await fresh.dispose()


async def test_ride_out_raises_real_errors_at_once_and_gives_up_after_the_limit(reached) -> None:
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("not a database problem")

    with pytest.raises(ValueError):
        await ride_out(reached, "test", broken)
    assert len(calls) == 1

    async def down() -> None:
        raise ConnectionRefusedError(111, "refused")

    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await ride_out(reached, "test", down, max_wait_s=0.5)
    assert 0.5 <= time.monotonic() - start < 5


async def test_queue_waits_out_a_sqlite_lock_held_past_the_busy_timeout(
    tmp_path, monkeypatch
) -> None:
    """A writer holding SQLite's lock for 1.5 s, busy timeout 0.2 s: claim and complete wait."""
    from pathgen.store import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    setup = make_engine(url)
    await migrate.upgrade(setup)
    async with session_scope(setup) as s:
        s.add(Run(id="r", config={}, pathgen_version="t"))
        await s.flush()
        await queue.enqueue(s, "r", [NewWork("describe", "k")])
    await setup.dispose()

    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    engine = make_engine(url)
    locked = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(1.5)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        await asyncio.to_thread(locked.wait)
        (item,) = await queue.claim(engine, owner="w", stages=["describe"], limit=1)
        assert await queue.complete(engine, [Completion(item)]) == [True]
        assert await queue.counts(engine, "r") == {"describe": {"done": 1}}
    finally:
        holder.join()
        await engine.dispose()


def test_only_database_errors_count_as_database_outages() -> None:
    from pathgen.store.outage import is_database_outage

    assert is_database_outage(_wrapped(ConnectionRefusedError(111, "refused")))
    assert is_database_outage(_wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_database_outage(ConnectionRefusedError(111, "refused"))  # e.g. an LLM endpoint
    assert not is_database_outage(_wrapped(sqlite3.OperationalError("no such table: runs")))


async def test_an_item_interrupted_by_a_database_outage_keeps_its_attempt(tmp_path) -> None:
    """max_attempts=1: had the outage counted as the item's failure, it would be parked."""
    from pathgen.runs.worker import StageHandler, Worker
    from pathgen.store import migrate
    from pathgen.store.models import WorkItem

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await migrate.upgrade(engine)
    async with session_scope(engine) as s:
        s.add(Run(id="r", config={}, pathgen_version="t"))
        await s.flush()
        await queue.enqueue(s, "r", [NewWork("describe", "k")], max_attempts=1)
    calls = []

    async def handle(item: queue.Claimed, _inputs: object) -> Completion:
        calls.append(item.attempts)
        if len(calls) == 1:
            raise _wrapped(ConnectionResetError("server closed the connection"))
        return Completion(item)

    worker = Worker(engine, [StageHandler("describe", 1, handle)], run_id="r", exit_when_idle=True)
    try:
        stats = await asyncio.wait_for(worker.run(), 30)
        async with session_scope(engine) as s:
            (row,) = (await s.scalars(select(WorkItem))).all()
    finally:
        await engine.dispose()
    assert (row.status, row.attempts) == ("done", 1)
    assert calls == [1, 1] and (stats.done, stats.released, stats.failed) == (1, 1, 0)
