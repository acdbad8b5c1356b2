"""Read-only transactions: curators and status never wait on (or block) pipeline writers."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs.progress import snapshot
from pathgen.store import engine as engine_module
from pathgen.store.engine import make_engine, read_scope, session_scope
from pathgen.web import create_app
from tests.populate import populate
from tests.webutil import settings_for


def _sqlite_path(url: str) -> str:
    return url.split("///", 1)[1]


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for SQLite's write lock gives up after 0.2 s instead of 60 s."""
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 200)


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's write lock
async def test_reads_do_not_wait_for_a_writer_holding_the_sqlite_lock(
    engine: AsyncEngine, db_url: str, short_busy_timeout: None
) -> None:
    p = await populate(engine)
    fresh = make_engine(db_url)  # picks up the short busy timeout
    writer = sqlite3.connect(_sqlite_path(db_url), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a worker in the middle of a write
        writer.execute("UPDATE runs SET status = 'uncommitted'")
        progress = await snapshot(fresh, p.run_id)  # `pathgen status`
        assert progress.run_id == p.run_id and progress.status != "uncommitted"
        async with read_scope(fresh) as s:
            assert (await s.execute(text("SELECT count(*) FROM tiles"))).scalar_one() > 0
        with pytest.raises(OperationalError, match="locked"):  # what a writing scope gets
            async with session_scope(fresh) as s:
                await s.execute(text("SELECT 1"))
        app = create_app(settings_for(db_url), reviewer="tester", allowed_hosts=["testserver"])
        with TestClient(app) as client:  # the curator's pages
            assert client.get("/").status_code == 200
            assert client.get(f"/runs/{p.run_id}").status_code == 200
            assert client.get(f"/tiles/{p.tile_ids[0]}").status_code == 200
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        await fresh.dispose()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_read_scope_refuses_writes_on_postgres(engine: AsyncEngine) -> None:
    await populate(engine)
    with pytest.raises(DBAPIError, match="read-only"):
        async with read_scope(engine) as s:
            await s.execute(text("UPDATE runs SET status = 'changed'"))
    async with read_scope(engine) as s:
        assert (await s.execute(text("SELECT count(*) FROM runs"))).scalar_one() == 1
