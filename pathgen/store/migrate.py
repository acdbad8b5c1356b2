"""Schema migrations (Alembic) driven from pathgen: the only way a schema is made.

The migration scripts and ``alembic.ini`` ship inside the package (``pathgen.assets``:
the repository's ``db/`` folder and ``alembic.ini``), found with importlib.resources, so
nothing depends on the current directory; the same ``alembic.ini`` serves the ``alembic``
command in a checkout (e.g. ``alembic revision``).

:func:`ensure_head` is what ``pathgen run`` and ``pathgen worker`` call at start: on
Postgres it takes an advisory lock first, so when many workers start together on an
empty database one of them migrates and the others wait, then find the schema at head.
On SQLite the check and the upgrade share one ``BEGIN IMMEDIATE`` transaction, which
serialises them the same way.

Example::

    await ensure_head(engine)        # migrate if needed, safely against concurrent starts
    await downgrade(engine, "base")
"""

from __future__ import annotations

import logging
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.assets import alembic_ini, migrations_dir
from pathgen.store.engine import read_only
from pathgen.store.models import Base
from pathgen.store.schema_filter import include_name, include_object

log = logging.getLogger(__name__)

#: Postgres advisory lock key held while checking and upgrading the schema ("pathgen" in hex).
MIGRATION_LOCK = 0x70617468676E


def alembic_config() -> Config:
    """Alembic's configuration for the migrations shipped with pathgen."""
    cfg = Config(str(alembic_ini()))
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Set SQLite's foreign key enforcement on the DBAPI connection, outside any
    transaction (inside one the pragma does nothing)."""
    cursor = connection.connection.dbapi_connection.cursor()
    cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    cursor.close()


async def _with_connection(engine: AsyncEngine, fn: Any, *args: Any) -> Any:
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as conn:
        if sqlite:
            # SQLite drops a column by recreating the table (alembic batch mode); with
            # foreign keys enforced, dropping the old table fails as soon as another
            # table's rows point at it.
            await conn.run_sync(_sqlite_foreign_keys, False)
        try:
            result = await conn.run_sync(fn, *args)
            await conn.commit()
        finally:
            if sqlite:
                await conn.rollback()
                await conn.run_sync(_sqlite_foreign_keys, True)
    return result


def _command(connection: Connection, name: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, name)(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _with_connection(engine, _command, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _with_connection(engine, _command, "downgrade", revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: no schema yet)."""
    return await _with_connection(read_only(engine), _current)


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def _upgrade_if_behind(connection: Connection, target: str) -> str | None:
    """In the caller's transaction: upgrade when behind; returns the revision it started at
    when it upgraded, else ``"head"`` (nothing to do)."""
    before = _current(connection)
    if before == target:
        return "head"
    _command(connection, "upgrade", "head")
    return before


async def ensure_head(engine: AsyncEngine) -> bool:
    """Bring the schema to head unless it is there; True when this call upgraded it.

    Safe when many processes call it at once on a new database (see the module docstring).
    """
    target = head()
    async with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            await conn.commit()
        try:
            before = await conn.run_sync(_upgrade_if_behind, target)
            await conn.commit()
        finally:
            if postgres:
                await conn.rollback()
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                await conn.commit()
    if before == "head":
        return False
    log.warning("database schema upgraded from %s to %s", before or "empty", target)
    return True


def _diff(connection: Connection) -> list[Any]:
    opts = {"compare_type": True, "include_name": include_name, "include_object": include_object}
    ctx = MigrationContext.configure(connection, opts=opts)
    return compare_metadata(ctx, Base.metadata)


async def schema_diff(engine: AsyncEngine) -> list[Any]:
    """Differences between the migrated database and the models (empty when they agree)."""
    return await _with_connection(read_only(engine), _diff)
