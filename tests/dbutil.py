"""Per-test databases: a fresh SQLite file or a fresh Postgres database each time."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

POSTGRES_ENV = "PATHGEN_TEST_POSTGRES_URL"
SKIP_REASON = f"{POSTGRES_ENV} is not set: Postgres tests need a server (CI sets it in .ci/run)"


def postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """Create a throwaway database on the test server; yields its SQLAlchemy URL."""
    import asyncpg

    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(SKIP_REASON)
    name = f"pathgen_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_asyncpg_dsn(admin))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(_asyncpg_dsn(admin))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'pathgen.db'}"
    else:
        async with postgres_database() as url:
            yield url
