"""Migrations are the only way a schema is made: up, down, up again, and they match the models."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect, text

from pathgen.store import migrate
from pathgen.store.engine import make_engine
from pathgen.store.models import Base


async def _tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_downgrade_upgrade_and_models_agree(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert await migrate.current(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current(engine) == migrate.head()
        assert set(Base.metadata.tables) <= await _tables(engine)

        await migrate.downgrade(engine, "base")
        assert await migrate.current(engine) is None
        assert not (set(Base.metadata.tables) & await _tables(engine))

        await migrate.upgrade(engine)
        assert await migrate.schema_diff(engine) == []
    finally:
        await engine.dispose()


async def test_schema_diff_detects_drift(engine) -> None:
    """The agreement check can fail: a column the models lack is reported."""
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE runs ADD COLUMN stray INTEGER"))
    diff = await migrate.schema_diff(engine)
    assert any("stray" in repr(d) for d in diff)


@pytest.mark.parametrize("revision", ["head"])
async def test_cli_db_commands(db_url: str, revision: str, monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from pathgen.cli.app import app

    monkeypatch.setenv("PATHGEN_DB_URL", db_url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    # The CLI runs its own event loop: drive it from a thread, as a terminal would.
    up = await asyncio.to_thread(runner.invoke, app, ["db", "upgrade", revision])
    assert up.exit_code == 0, up.output
    cur = await asyncio.to_thread(runner.invoke, app, ["db", "current"])
    assert "up to date" in cur.output
    refused = await asyncio.to_thread(runner.invoke, app, ["db", "downgrade"])
    assert refused.exit_code == 2 and "--yes" in refused.output
    cur = await asyncio.to_thread(runner.invoke, app, ["db", "current"])
    assert "up to date" in cur.output  # nothing was dropped
    down = await asyncio.to_thread(runner.invoke, app, ["db", "downgrade", "--yes"])
    assert down.exit_code == 0 and "base" in down.output


async def test_downgrade_and_upgrade_keep_a_populated_database(engine) -> None:
    """SQLite recreates a table to drop a column; rows of other tables pointing at it
    (tiles -> slides) must not make that fail, and the rows stay."""
    from tests.populate import populate

    pop = await populate(engine)
    await migrate.downgrade(engine, "0004")
    assert await migrate.current(engine) == "0004"
    await migrate.upgrade(engine)
    async with engine.connect() as conn:
        tiles = (await conn.execute(text("SELECT count(*) FROM tiles"))).scalar_one()
        slides = (await conn.execute(text("SELECT count(*) FROM slides"))).scalar_one()
        if engine.dialect.name == "sqlite":  # the pooled connection enforces them again
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
    assert tiles == len(pop.tile_ids) and slides == 1
