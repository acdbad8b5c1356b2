"""Schema migrations (Alembic) driven from pathgen: the only way a schema is made.

Example::

    await upgrade(engine)            # to head
    await downgrade(engine, "base")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store.engine import read_only
from pathgen.store.models import Base
from pathgen.store.schema_filter import include_name, include_object

REPO_ROOT = Path(__file__).resolve().parents[2]


def alembic_config() -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "db"))
    return cfg


async def _with_connection(engine: AsyncEngine, fn: Any, *args: Any) -> Any:
    async with engine.connect() as conn:
        result = await conn.run_sync(fn, *args)
        await conn.commit()
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


def _diff(connection: Connection) -> list[Any]:
    opts = {"compare_type": True, "include_name": include_name, "include_object": include_object}
    ctx = MigrationContext.configure(connection, opts=opts)
    return compare_metadata(ctx, Base.metadata)


async def schema_diff(engine: AsyncEngine) -> list[Any]:
    """Differences between the migrated database and the models (empty when they agree)."""
    return await _with_connection(read_only(engine), _diff)
