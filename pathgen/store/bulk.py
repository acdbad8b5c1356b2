"""Rows written in bulk: a statement and its parameter rows, one executemany per statement.

A statement is a Core statement with dict rows, or the driver's own SQL (a ``str``) with
positional tuples, which skips SQLAlchemy's per-row parameter handling.

Example::

    await write_rows(session, [Rows(insert(Tile.__table__), [{...}, {...}])])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Rows:
    """Parameter rows for ``statement``: dicts for a Core statement, tuples for SQL text."""

    statement: Executable | str
    rows: list[Any]


async def write_rows(session: AsyncSession, rows: Iterable[Rows]) -> None:
    """Run each distinct statement of ``rows`` once, with all of its rows, in the
    session's transaction (statements in order of first appearance)."""
    grouped: dict[int, tuple[Executable | str, list[Any]]] = {}
    for r in rows:
        grouped.setdefault(id(r.statement), (r.statement, []))[1].extend(r.rows)
    for statement, params in grouped.values():
        if not params:
            continue
        if isinstance(statement, str):
            await (await session.connection()).exec_driver_sql(statement, params)
        else:
            await session.execute(statement, params)
