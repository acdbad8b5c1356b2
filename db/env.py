"""Alembic environment: runs migrations on a connection handed over by pathgen, or on its own."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from pathgen.store.models import Base
from pathgen.store.schema_filter import include_name, include_object

config = context.config
if config.config_file_name is not None and not config.attributes.get("connection"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
        include_object=include_object,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    from pathgen.store.engine import make_engine

    engine = make_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from pathgen.settings import load_settings

    url = config.get_main_option("sqlalchemy.url") or load_settings().database.url
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise SystemExit("pathgen migrations run online only: use `pathgen db upgrade`")
run_migrations_online()
