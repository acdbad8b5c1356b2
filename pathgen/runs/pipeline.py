"""The stage graph and the two ways to drive it: ``run_pipeline`` and ``run_worker``.

Stages stream through the queue: tile → embed → select → describe → degrade → revise
→ summarize. Each completion enqueues the next stage's items for the same slide or
tile, so a tile can be in revise while another slide is still being tiled; only
select waits for its slide's embeddings.

Example::

    summary = await run_pipeline(settings, entries, stop=asyncio.Event())
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs import queue, registry, reselect
from pathgen.runs.handlers.caption import (
    handle_degrade,
    handle_describe,
    handle_fuse,
    handle_revise,
    handle_summarize,
)
from pathgen.runs.handlers.embed import handle_embed
from pathgen.runs.handlers.select import handle_select
from pathgen.runs.handlers.tile import handle_tile
from pathgen.runs.manifest import SlideEntry
from pathgen.runs.owner import reclaim_dead_local_leases
from pathgen.runs.progress import RunProgress, report_until, snapshot
from pathgen.runs.queue import Claimed, Completion
from pathgen.runs.resources import Resources, RunResources
from pathgen.runs.worker import StageHandler, Worker, WorkerStats
from pathgen.settings import Settings
from pathgen.store import migrate
from pathgen.store.engine import make_engine
from pathgen.types import PIPELINE_STAGES

log = logging.getLogger("pathgen.run")

Handler = Callable[[Claimed, Resources], Awaitable[Completion]]
HANDLERS: dict[str, Handler] = {
    "tile": handle_tile,
    "embed": handle_embed,
    "select": handle_select,
    "describe": handle_describe,
    "fuse": handle_fuse,
    "degrade": handle_degrade,
    "revise": handle_revise,
    "summarize": handle_summarize,
}


def stage_concurrency(settings: Settings, stage: str, override: int | None = None) -> int:
    if stage == "tile":
        return override or settings.tiling.workers
    if stage in ("embed", "select"):
        return 1
    cap = getattr(settings.captioning, stage).max_concurrency
    return min(cap, override) if override else cap


def build_handlers(
    resources: RunResources, stages: Sequence[str], concurrency: int | None = None
) -> list[StageHandler]:
    unknown = [s for s in stages if s not in HANDLERS]
    if unknown:
        from pathgen.errors import ConfigError

        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(PIPELINE_STAGES)}")
    ordered = [s for s in PIPELINE_STAGES if s in stages]
    return [
        StageHandler(
            s,
            stage_concurrency(resources.settings, s, concurrency),
            partial(_dispatch, HANDLERS[s], resources),
        )
        for s in ordered
    ]


async def _dispatch(handler: Handler, resources: RunResources, item: Claimed) -> Completion:
    fresh = "reselect" in item.payload  # the run's model may have changed since
    return await handler(item, await resources.for_run(item.run_id, fresh=fresh))


CAPTION_STAGES = PIPELINE_STAGES[PIPELINE_STAGES.index("describe") :]


def downstream(stages: Sequence[str]) -> list[str]:
    """The caption stages from the earliest of ``stages`` on (what a redo must re-run)."""
    bad = [s for s in stages if s not in CAPTION_STAGES]
    if bad:
        from pathgen.errors import ConfigError

        raise ConfigError(
            f"only caption stages can be redone, not {bad}; "
            f"caption stages are {', '.join(CAPTION_STAGES)}",
            key="--redo",
        )
    first = min(CAPTION_STAGES.index(s) for s in stages)
    return list(CAPTION_STAGES[first:])


@dataclass
class RunSummary:
    run_id: str
    created: bool
    stats: WorkerStats
    progress: RunProgress
    interrupted: bool


async def open_store(settings: Settings) -> AsyncEngine:
    """The engine for the configured database, migrated to head (a new database is created)."""
    engine = make_engine(settings.database.url)
    try:
        if await migrate.current(engine) != migrate.head():
            await migrate.upgrade(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


def _absolute_paths(settings: Settings) -> Settings:
    data_dir = str(Path(settings.run.data_dir).expanduser().resolve())
    preview = settings.tiling.preview_dir
    update = {"run": settings.run.model_copy(update={"data_dir": data_dir})}
    if preview:
        update["tiling"] = settings.tiling.model_copy(
            update={"preview_dir": str(Path(preview).expanduser().resolve())}
        )
    return settings.model_copy(update=update)


async def run_pipeline(
    settings: Settings,
    entries: Sequence[SlideEntry],
    *,
    run_id: str | None = None,
    stages: Sequence[str] = PIPELINE_STAGES,
    stop: asyncio.Event | None = None,
    log_format: str = "rich",
    show_progress: bool = True,
    grace_s: float = 30.0,
    redo: Sequence[str] = (),
    force: bool = False,
) -> RunSummary:
    """Create or resume a run over ``entries`` and work until every item is done or parked.

    ``redo`` queues finished items of those caption stages again: outputs made with the
    same provider, model and prompt are reused unless ``force`` asks for new revisions; a
    new output queues the stages after it again. ``select`` in ``redo`` starts a new
    selection round with the current model and selection settings (see
    :mod:`pathgen.runs.reselect`).
    """
    settings = _absolute_paths(settings)
    run_id = run_id or registry.default_run_id(settings)
    stop = stop or asyncio.Event()
    engine = await open_store(settings)
    res = RunResources(settings, engine)
    try:
        previous = await reselect.stored_settings(engine, run_id) if "select" in redo else None
        created = await registry.ensure_run(engine, run_id, settings)
        await registry.add_slides(
            engine, run_id, entries, max_attempts=settings.workers.max_attempts
        )
        if "select" in redo:
            round_no, requeued = await reselect.start_round(engine, run_id, previous, settings)
            log.warning("selection round %d: re-embedding %d slide(s)", round_no, requeued)
        caption_redo = [s for s in redo if s != "select"]
        if caption_redo:
            downstream(caption_redo)  # validates the stage names
            requeued = await queue.requeue_done(engine, run_id, caption_redo, force=force)
            log.warning("requeued %d item(s) of %s", requeued, ", ".join(caption_redo))
        reclaimed = await reclaim_dead_local_leases(engine, run_id)
        if reclaimed:
            log.warning("reclaimed %d item(s) leased by a worker that died", reclaimed)
        worker = Worker(
            engine,
            build_handlers(res, stages),
            run_id=run_id,
            lease_s=settings.workers.lease_s,
            exit_when_idle=True,
            stop=stop,
            grace_s=grace_s,
        )
        done = asyncio.Event()
        reporter = (
            asyncio.create_task(report_until(engine, run_id, done, log_format=log_format))
            if show_progress
            else None
        )
        try:
            stats = await worker.run()
        finally:
            done.set()
            if reporter is not None:
                await reporter
        progress = await snapshot(engine, run_id)
        interrupted = stop.is_set() and not progress.finished
        status = "completed" if progress.finished else "interrupted" if interrupted else "paused"
        await registry.finish_run(engine, run_id, status)
        progress.status = status
        return RunSummary(run_id, created, stats, progress, interrupted)
    finally:
        await res.aclose()
        await engine.dispose()


async def run_worker(
    settings: Settings,
    *,
    stages: Sequence[str] = PIPELINE_STAGES,
    concurrency: int | None = None,
    run_id: str | None = None,
    stop: asyncio.Event | None = None,
    exit_when_idle: bool = False,
    grace_s: float = 30.0,
) -> WorkerStats:
    """Claim and process items of ``stages`` (any run, or one run) until stopped."""
    settings = _absolute_paths(settings)
    engine = await open_store(settings)
    res = RunResources(settings, engine)
    try:
        worker = Worker(
            engine,
            build_handlers(res, stages, concurrency),
            run_id=run_id,
            lease_s=settings.workers.lease_s,
            exit_when_idle=exit_when_idle,
            stop=stop or asyncio.Event(),
            grace_s=grace_s,
        )
        return await worker.run()
    finally:
        await res.aclose()
        await engine.dispose()
