"""The stage graph and the two ways to drive it: ``run_pipeline`` and ``run_worker``.

Stages stream through the queue: tile → embed → select → describe → degrade → revise
→ summarize (→ instruct, when enabled). Each completion enqueues the next stage's items
for the same slide or tile, so a tile can be in revise while another slide is still
being tiled; only select waits for its slide's embeddings.

Example::

    summary = await run_pipeline(settings, entries, stop=asyncio.Event())
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import CannotStart, ConfigError
from pathgen.runs import queue, registry, reselect
from pathgen.runs.batches import BatchDriver, batch_stages
from pathgen.runs.budget import Budget, has_budget
from pathgen.runs.caption_processes import CaptionProcesses
from pathgen.runs.drift import Change
from pathgen.runs.graph import downstream
from pathgen.runs.handlers.caption import (
    handle_degrade,
    handle_describe,
    handle_fuse,
    handle_revise,
    handle_summarize,
    prepare_batch,
)
from pathgen.runs.handlers.embed import handle_embed
from pathgen.runs.handlers.instruct import (
    handle_instruct,
    queue_instruct_after,
    queue_missing_instruct,
)
from pathgen.runs.handlers.select import handle_select
from pathgen.runs.handlers.tile import COMMIT_WAIT_S, PREFETCH, handle_tile, read_slides
from pathgen.runs.manifest import SlideEntry
from pathgen.runs.outcome import Outcome, run_outcome
from pathgen.runs.owner import new_owner, reclaim_dead_local_leases
from pathgen.runs.preflight import preflight
from pathgen.runs.progress import report_until
from pathgen.runs.queue import Claimed, Completion
from pathgen.runs.report import pending_runs
from pathgen.runs.resources import Resources, RunResources
from pathgen.runs.shares import process_count, spread_stages
from pathgen.runs.worker import StageHandler, Worker, WorkerStats
from pathgen.settings import Settings
from pathgen.store import migrate
from pathgen.store.engine import make_engine
from pathgen.types import PIPELINE_STAGES

log = logging.getLogger("pathgen.run")

Handler = Callable[[Claimed, Resources], Awaitable[Completion]]
#: Caption handlers also get their item's entry of the batch read (:func:`prepare_batch`),
#: the tile handler what its claim read (:func:`read_slides`).
InputsHandler = Callable[[Claimed, Resources, Any], Awaitable[Completion]]
HANDLERS: dict[str, Handler] = {
    "embed": handle_embed,
    "select": handle_select,
    "instruct": handle_instruct,
}
CAPTION_HANDLERS: dict[str, InputsHandler] = {
    "describe": handle_describe,
    "fuse": handle_fuse,
    "degrade": handle_degrade,
    "revise": handle_revise,
    "summarize": queue_instruct_after(handle_summarize),
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
    unknown = [s for s in stages if s not in (*HANDLERS, *CAPTION_HANDLERS, "tile")]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(PIPELINE_STAGES)}")
    ordered = [s for s in PIPELINE_STAGES if s in stages]
    batched = batch_stages(resources.settings)  # claimed by the batch driver, not online
    handlers = []
    for s in ordered:
        limit = 0 if s in batched else stage_concurrency(resources.settings, s, concurrency)
        if s == "tile":
            handle = partial(_dispatch_with_inputs, handle_tile, resources)
            tile = StageHandler(
                s, limit, handle, read=read_slides, prefetch=PREFETCH, commit_wait_s=COMMIT_WAIT_S
            )
            handlers.append(tile)
        elif s in CAPTION_HANDLERS:
            handle = partial(_dispatch_with_inputs, CAPTION_HANDLERS[s], resources)
            prepare = partial(_prepare, resources)
            handlers.append(StageHandler(s, limit, handle, prepare))
        else:
            handlers.append(StageHandler(s, limit, partial(_dispatch, HANDLERS[s], resources)))
    return handlers


async def _resources(resources: RunResources, item: Claimed) -> Resources:
    fresh = "reselect" in item.payload  # the run's model may have changed since
    return await resources.for_run(item.run_id, fresh=fresh)


async def _dispatch(
    handler: Handler, resources: RunResources, item: Claimed, _inputs: Any
) -> Completion:
    return await handler(item, await _resources(resources, item))


async def _dispatch_with_inputs(
    handler: InputsHandler, resources: RunResources, item: Claimed, inputs: Any
) -> Completion:
    return await handler(item, await _resources(resources, item), inputs)


async def _prepare(resources: RunResources, items: Sequence[Claimed]) -> dict[int, Any]:
    """One read per run of a claimed caption batch (see :func:`prepare_batch`)."""
    by_run: dict[str, list[Claimed]] = {}
    for item in items:
        by_run.setdefault(item.run_id, []).append(item)
    found: dict[int, Any] = {}
    for run_id, group in by_run.items():
        found.update(await prepare_batch(await _resources(resources, group[0]), run_id, group))
    return found


@dataclass
class RunSummary:
    run_id: str
    created: bool
    stats: WorkerStats
    outcome: Outcome
    #: Things the preflight noticed that do not stop the run (e.g. missing slide files).
    notes: list[str] = field(default_factory=list)
    #: What the caption processes did (part of ``stats``; see pathgen.runs.shares).
    helpers: WorkerStats = field(default_factory=WorkerStats)


@dataclass
class WorkerSummary:
    stats: WorkerStats
    #: The outcome of the run the worker was limited to (``--run``), else None.
    outcome: Outcome | None
    interrupted: bool


async def open_store(settings: Settings, *, create: bool = True) -> AsyncEngine:
    """The engine for the configured database, with the schema at head (a new database is
    migrated; concurrent starts do not race, see :func:`pathgen.store.migrate.ensure_head`).

    ``create=False``: a SQLite file that does not exist is a ConfigError, not a new file.
    """
    engine = make_engine(settings.database.url, create=create)
    try:
        await migrate.ensure_head(engine)
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


def _taken(run_id: str, changes: Sequence[Change]) -> list[str]:
    """Say (in the log now, in the summary later) which changed settings the run took."""
    notes = []
    for c in changes:
        why = "operational" if c.operational else f"--redo {c.stage}"
        notes.append(f"setting taken: {c.key} {c.old!r} -> {c.new!r} ({why})")
        log.warning("run %s: %s", run_id, notes[-1])
    return notes


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
    probe: bool = False,
) -> RunSummary:
    """Create or resume a run over ``entries`` and work until every item is done or parked.

    Before anything is claimed the settings are checked (:func:`.preflight.preflight`;
    ``probe`` also asks each provider for one token) and compared with the run's stored
    settings (:mod:`.drift`): both raise a :class:`~pathgen.errors.ConfigError` subclass.
    ``redo`` queues finished items of those caption stages again: outputs made with the
    same provider, model and prompt are reused unless ``force`` asks for new revisions; a
    new output queues the stages after it again. ``select`` in ``redo`` starts a new
    selection round with the current model and selection settings (see
    :mod:`pathgen.runs.reselect`).
    """
    settings = _absolute_paths(settings)
    run_id = run_id or registry.default_run_id(settings)
    stop = stop or asyncio.Event()
    if redo:
        downstream(redo)  # validates the stage names
    checked = await preflight(settings, stages, entries, probe_providers=probe)
    engine = await open_store(settings)
    processes = process_count(settings, stages)
    # The run's processes share encoded tiles through a folder of their own.
    images_dir = Path(tempfile.mkdtemp(prefix="pathgen-tiles-")) if processes > 1 else None
    res = RunResources(settings, engine, part=(0, processes), images_dir=images_dir)
    res.preload(settings.model, checked.clip)
    try:
        previous = await reselect.stored_settings(engine, run_id) if "select" in redo else None
        start = await registry.ensure_run(
            engine, run_id, settings, redo=redo, force=force, owner=new_owner()
        )
        notes = [*_taken(run_id, start.changes), *checked.notes]
        await registry.add_slides(
            engine, run_id, entries, max_attempts=settings.workers.max_attempts
        )
        if "select" in redo:
            round_no, requeued = await reselect.start_round(engine, run_id, previous, settings)
            log.warning("selection round %d: re-embedding %d slide(s)", round_no, requeued)
        caption_redo = [s for s in redo if s != "select"]
        if caption_redo:
            requeued = await queue.requeue_done(engine, run_id, caption_redo, force=force)
            log.warning("requeued %d item(s) of %s", requeued, ", ".join(caption_redo))
        if "instruct" in redo and settings.captioning.instruct.enabled:
            await queue_missing_instruct(engine, run_id, settings.workers.max_attempts)
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
            budget=Budget(engine, run_id, settings) if has_budget(settings) else None,
            calls=res.calls_in_flight,
        )
        done = asyncio.Event()
        reporter = (
            asyncio.create_task(report_until(engine, run_id, done, log_format=log_format))
            if show_progress
            else None
        )
        batched = [s for s in batch_stages(settings) if s in stages]
        driver = (
            asyncio.create_task(
                BatchDriver(engine, settings, res, run_id, batched, worker.budget).run(done),
                name="batches",
            )
            if batched
            else None
        )
        if driver is not None:  # a driver that fails stops the worker, which waits for it
            driver.add_done_callback(lambda t: t.cancelled() or t.exception() and stop.set())
        helpers = CaptionProcesses(
            engine,
            settings,
            run_id,
            spread_stages(settings, stages),
            count=processes,
            grace_s=grace_s,
            images_dir=images_dir,
        )
        stopping = asyncio.create_task(_signal_on(stop, helpers.signal_stop))
        try:
            await helpers.start()
            stats = await worker.run()
        finally:
            stopping.cancel()
            stats_of_helpers = await helpers.stop()
            done.set()
            if reporter is not None:
                await reporter
            if driver is not None:
                await driver
        stats.add(stats_of_helpers)
        reached = await worker.budget.reached() if worker.budget else None
        outcome = await run_outcome(
            engine, run_id, stages, interrupted=stop.is_set(), budget=reached
        )
        await registry.finish_run(engine, run_id, outcome.status)
        return RunSummary(run_id, start.created, stats, outcome, notes, stats_of_helpers)
    finally:
        await res.aclose()
        await engine.dispose()
        if images_dir is not None:
            shutil.rmtree(images_dir, ignore_errors=True)


async def _signal_on(event: asyncio.Event, callback: Callable[[], None]) -> None:
    await event.wait()
    callback()


async def _check_pending(
    res: RunResources, stages: Sequence[str], run_id: str | None, probe: bool
) -> None:
    """Preflight every run this worker may take work from, with that run's own settings."""
    run_ids = [run_id] if run_id else await pending_runs(res.engine, stages)
    problems: list[tuple[str, str, str]] = []
    for rid in run_ids:
        settings = await res.run_settings(rid)
        try:
            checked = await preflight(settings, stages, probe_providers=probe)
        except CannotStart as exc:
            problems += [
                (f"run {rid}, {stage or 'run'}", key, msg) for stage, key, msg in exc.problems
            ]
            continue
        res.preload(settings.model, checked.clip)
    if problems:
        raise CannotStart(problems)


async def run_worker(
    settings: Settings,
    *,
    stages: Sequence[str] = PIPELINE_STAGES,
    concurrency: int | None = None,
    run_id: str | None = None,
    stop: asyncio.Event | None = None,
    exit_when_idle: bool = False,
    grace_s: float = 30.0,
    probe: bool = False,
    part: tuple[int, int] = (0, 1),
    images_dir: Path | None = None,
) -> WorkerSummary:
    """Claim and process items of ``stages`` (any run, or one run) until stopped.

    The runs with work waiting in ``stages`` (or ``run_id``) are checked first, each with
    its stored settings (:func:`.preflight.preflight`). ``part`` = (index, count): this
    worker is one of ``count`` processes sharing the stages' limits (and encoded tiles,
    through ``images_dir``).
    """
    settings = _absolute_paths(settings)
    stop = stop or asyncio.Event()
    engine = await open_store(settings)
    res = RunResources(settings, engine, part=part, images_dir=images_dir)
    try:
        await _check_pending(res, stages, run_id, probe)
        budget = None
        if run_id is not None:  # a limit is a run's: it holds for workers given the run
            run_settings = await res.run_settings(run_id)
            budget = Budget(engine, run_id, run_settings) if has_budget(run_settings) else None
        reclaimed = await reclaim_dead_local_leases(engine, run_id)
        if reclaimed:
            log.warning("reclaimed %d item(s) leased by a worker that died", reclaimed)
        worker = Worker(
            engine,
            build_handlers(res, stages, concurrency),
            run_id=run_id,
            lease_s=settings.workers.lease_s,
            exit_when_idle=exit_when_idle,
            stop=stop,
            grace_s=grace_s,
            budget=budget,
            calls=res.calls_in_flight,
        )
        stats = await worker.run()
        outcome = None
        if run_id is not None:
            reached = await budget.reached() if budget else None
            outcome = await run_outcome(
                engine, run_id, stages, interrupted=stop.is_set(), budget=reached
            )
        return WorkerSummary(stats, outcome, stop.is_set())
    finally:
        await res.aclose()
        await engine.dispose()
