"""Runs looked up by id, with a message naming the runs there when one is not.

Example::

    async with read_scope(engine) as session:
        if await session.get(Run, run_id) is None:
            raise ExportError(await missing_run_message(session, run_id))
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.store.models import Run

_LISTED = 20


async def missing_run_message(session: AsyncSession, run_id: str) -> str:
    """``no run 'x' in this database (runs: newest, ...)``: what to type instead."""
    newest = select(Run.id).order_by(Run.created_at.desc(), Run.id).limit(_LISTED + 1)
    known = list((await session.scalars(newest)).all())
    listed = ", ".join(known[:_LISTED]) + (", ..." if len(known) > _LISTED else "")
    return f"no run {run_id!r} in this database (runs: {listed or 'none yet'})"
