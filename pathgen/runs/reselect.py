"""``pathgen run --redo select``: embed again (when the model changed) and select again.

A new selection round is recorded with the model and selection settings it uses (the
run's previous settings become round 0 when no round was recorded yet), and the run's
finished ``embed`` items are queued again with ``reselect`` in their payload: each one
reuses embeddings the new model already has, else computes them, and then queues its
slide's ``select`` item, which writes the new round. Tiles the new round keeps are
captioned (tiles kept before keep their captions); tiles it drops leave the dataset.

Example::

    previous = await stored_settings(engine, run_id)       # before the run's config changes
    round_no, requeued = await start_round(engine, run_id, previous, settings)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs import queue
from pathgen.settings import Settings
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, SelectionRound, utcnow
from pathgen.store.selections import current_round

SECTIONS = ("model", "selection")


async def stored_settings(engine: AsyncEngine, run_id: str) -> dict[str, Any] | None:
    """The settings snapshot stored with ``run_id`` (None for a new run)."""
    async with session_scope(engine) as session:
        run = await session.get(Run, run_id)
        return dict(run.config or {}) if run is not None else None


def _sections(config: dict[str, Any]) -> dict[str, Any]:
    return {k: config.get(k) for k in SECTIONS}


async def start_round(
    engine: AsyncEngine, run_id: str, previous: dict[str, Any] | None, settings: Settings
) -> tuple[int, int]:
    """Record a new selection round and queue the run's embed items again.

    Returns ``(round, items requeued)``; a new run (``previous`` None) starts no round.
    """
    if previous is None:
        return 0, 0
    now = utcnow()
    async with session_scope(engine) as session:
        have = await session.scalar(
            select(SelectionRound.id).where(SelectionRound.run_id == run_id).limit(1)
        )
        if have is None:
            session.add(
                SelectionRound(run_id=run_id, round=0, settings=_sections(previous), created_at=now)
            )
            await session.flush()
        round_no = await current_round(session, run_id) + 1
        session.add(
            SelectionRound(
                run_id=run_id,
                round=round_no,
                settings=_sections(settings.snapshot()),
                created_at=now,
            )
        )
    requeued = await queue.requeue_done(engine, run_id, ["embed"], payload={"reselect": round_no})
    return round_no, requeued
