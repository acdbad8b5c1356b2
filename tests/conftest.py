"""Shared fixtures: per-test databases on SQLite and (when configured) Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store import migrate
from pathgen.store.engine import make_engine
from tests.dbutil import database_url

REPO_ROOT = Path(__file__).resolve().parents[1]
SLIDES_DIR = REPO_ROOT.parent / "shared" / "testdata" / "slides"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def db_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database (no schema) on each backend."""
    async with database_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database (schema at head) on each backend."""
    eng = make_engine(db_url)
    await migrate.upgrade(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def slides_dir() -> Path:
    if not SLIDES_DIR.is_dir():
        pytest.skip(f"test slides not found at {SLIDES_DIR}")
    return SLIDES_DIR
