"""What went wrong in a run: failed slides and parked items, for summaries and `status`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store.engine import read_scope
from pathgen.store.models import RunSlide, Slide, WorkItem


@dataclass(frozen=True)
class SlideProblem:
    slide_id: int
    path: str
    reason: str | None
    error: str | None
    #: The reader that opened the file (None when no reader could).
    reader: str | None = None


@dataclass(frozen=True)
class ParkedItem:
    stage: str
    key: str
    attempts: int
    error: str | None


async def slide_problems(engine: AsyncEngine, run_id: str) -> list[SlideProblem]:
    """Failed slides, and tiled slides that carry a warning (e.g. unreadable tiles)."""
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(
                Slide.id, Slide.path, Slide.status, Slide.error_reason, Slide.error, Slide.reader
            )
            .join(RunSlide, RunSlide.slide_id == Slide.id)
            .where(RunSlide.run_id == run_id, Slide.error.is_not(None))
            .order_by(Slide.id)
        )
        return [
            SlideProblem(
                sid, path, reason or ("warning" if status == "tiled" else None), error, reader
            )
            for sid, path, status, reason, error, reader in rows
        ]


async def slide_readers(engine: AsyncEngine, run_id: str) -> dict[str, int]:
    """Tiled slides of the run per reader that opened them (``openslide``, ``tifffile``...)."""
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(Slide.reader, func.count())
            .join(RunSlide, RunSlide.slide_id == Slide.id)
            .where(RunSlide.run_id == run_id, Slide.status == "tiled")
            .group_by(Slide.reader)
            .order_by(Slide.reader)
        )
        return {reader or "unknown": n for reader, n in rows}


async def parked_items(engine: AsyncEngine, run_id: str, limit: int = 50) -> list[ParkedItem]:
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(WorkItem.stage, WorkItem.key, WorkItem.attempts, WorkItem.last_error)
            .where(WorkItem.run_id == run_id, WorkItem.status == "failed")
            .order_by(WorkItem.id)
            .limit(limit)
        )
        return [ParkedItem(*r) for r in rows]


async def slide_counts(engine: AsyncEngine, run_id: str) -> dict[str, int]:
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(Slide.status, func.count())
            .join(RunSlide, RunSlide.slide_id == Slide.id)
            .where(RunSlide.run_id == run_id)
            .group_by(Slide.status)
        )
        return {status: n for status, n in rows}


async def pending_runs(engine: AsyncEngine, stages: Sequence[str]) -> list[str]:
    """Runs with items of ``stages`` still queued or leased (the work a worker may take)."""
    async with read_scope(engine) as session:
        rows = await session.scalars(
            select(WorkItem.run_id)
            .where(WorkItem.stage.in_(list(stages)), WorkItem.status.in_(("queued", "leased")))
            .distinct()
        )
        return sorted(rows)
