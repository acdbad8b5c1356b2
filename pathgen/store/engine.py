"""Async engine factory with the per-backend settings pathgen relies on.

SQLite runs in WAL mode with a busy timeout, and every transaction that may write
starts with ``BEGIN IMMEDIATE`` so that concurrent writers wait for the lock instead of
failing with "database is locked" on a read-to-write upgrade. Read-only work (pages,
status, searches) goes through :func:`read_scope`: a plain deferred ``BEGIN``, which in
WAL mode neither waits for writers nor makes them wait; on Postgres a ``READ ONLY``
transaction.

Example::

    engine = make_engine("sqlite+aiosqlite:///pathgen.db")
    async with session_scope(engine) as session:
        ...
    async with read_scope(engine) as session:
        ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from pathgen.errors import ConfigError
from pathgen.store.outage import watch

SQLITE_BUSY_TIMEOUT_MS = 60_000
#: Execution option marking a connection's transactions read-only (see :func:`read_scope`).
READ_ONLY = "pathgen_read_only"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (relative to the current folder when the URL is), or
    None for other databases and in-memory or ``file:`` URI SQLite."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


def _require_file(url: str) -> None:
    path = sqlite_file(url)
    if path is None or path.exists():
        return
    raise ConfigError(
        f"no database file {path.resolve()} ({url}); this command reads an existing "
        "database and does not create one: run `pathgen run` (or `pathgen demo`, "
        "`pathgen db upgrade`) in this folder first, or pass --config with the "
        "pathgen.toml whose database.url names your database",
        key="database.url",
    )


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, create: bool = True
) -> AsyncEngine:
    """Create the async engine for ``url`` (``sqlite+aiosqlite`` or ``postgresql+asyncpg``).

    ``create=False`` is for commands that only use an existing database: a SQLite file
    that does not exist is then a :class:`ConfigError` naming it, instead of an empty
    file left behind by the first connection.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises several types here
        raise ConfigError(f"invalid database URL {url!r}: {exc}", key="database.url") from None
    if not create:
        _require_file(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine)
        watch(engine)
        return engine
    kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    watch(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session in one transaction: committed on success, rolled back on error."""
    async with sessionmaker(engine)() as session, session.begin():
        yield session


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (same pool) whose transactions start as plain reads on SQLite."""
    return engine.execution_options(**{READ_ONLY: True})


@asynccontextmanager
async def read_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session in one read-only transaction (never takes SQLite's write lock).

    For reads only: on Postgres a write fails ("read-only transaction"); on SQLite it
    would have to upgrade the lock mid-transaction, which can fail under load.
    """
    async with sessionmaker(read_only(engine))() as session, session.begin():
        if not is_sqlite(str(engine.url)):
            await session.execute(text("SET TRANSACTION READ ONLY"))
        yield session
