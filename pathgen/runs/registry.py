"""Runs and their slides: create or resume a run, and queue its slides for tiling."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen import __version__
from pathgen.errors import ConfigError, PathgenError
from pathgen.runs import queue
from pathgen.runs.drift import Change, output_digest_source, reconcile
from pathgen.runs.graph import CAPTION_STAGES
from pathgen.runs.manifest import SlideEntry
from pathgen.settings import Settings
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, RunSlide, Slide, utcnow
from pathgen.store.outage import rides_out_outages
from pathgen.store.runs import missing_run_message


def default_run_id(settings: Settings) -> str:
    """``settings.run.name``, or a stable id derived from the manifest and the settings that
    shape outputs, so that running the same config again resumes the same run (also after
    a change of concurrency, rate limits, prices and other operational settings)."""
    if settings.run.name:
        return settings.run.name
    source = output_digest_source(settings.snapshot(), Settings().snapshot())
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    stem = (settings.run.manifest or "run").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{stem}-{digest}"


@dataclass(frozen=True)
class RunStart:
    """What :func:`ensure_run` did: created the run, or resumed it taking ``changes``."""

    created: bool
    changes: list[Change]


def _stored_snapshot(run_id: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The stored settings with today's defaults filled in (a setting added to pathgen
    since the run was made is not a change unless the config sets it)."""
    try:
        return Settings.model_validate(config or {}).snapshot()
    except ValidationError as exc:
        raise ConfigError(
            f"the settings stored with run {run_id!r} are no longer valid: "
            f"{exc.errors()[0]['msg']}: start a new run (run.name / --run-id)",
            key="runs.config",
        ) from None


async def ensure_run(
    engine: AsyncEngine,
    run_id: str,
    settings: Settings,
    *,
    redo: Sequence[str] = (),
    force: bool = False,
    owner: str | None = None,
) -> RunStart:
    """Create the run, or resume it if its stored settings allow (see :mod:`.drift`).

    ``redo`` are the stages whose outputs will be made again (``force``: even where the
    provider, model and prompt are unchanged): changes of their settings are accepted.
    Raises :class:`~pathgen.errors.ConfigDrift` (nothing is written) when another change
    would alter what the run makes. ``owner`` is the driving process.
    """
    async with session_scope(engine) as session:
        run = await session.get(Run, run_id)
        if run is None:
            session.add(
                Run(
                    id=run_id,
                    config=settings.snapshot(),
                    status="running",
                    owner=owner,
                    pathgen_version=__version__,
                )
            )
            return RunStart(True, [])
        stored = _stored_snapshot(run_id, run.config)
        config, found = reconcile(
            run_id,
            stored,
            settings.snapshot(),
            redo=redo,
            force=force,
            caption_stages=CAPTION_STAGES,
        )
        if found:
            run.config = config
        run.status = "running"
        run.owner = owner
        run.updated_at = utcnow()
        return RunStart(False, found)


async def add_slides(
    engine: AsyncEngine, run_id: str, entries: Sequence[SlideEntry], *, max_attempts: int
) -> list[int]:
    """Register slides with the run and queue their tiling (idempotent).

    A slide that failed to tile in this run and whose manifest row has changed since
    (e.g. an ``mpp`` added) takes the new values and is queued again; one whose row is
    unchanged stays parked until ``pathgen retry``.
    """
    ids: list[int] = []
    retry: list[str] = []
    async with session_scope(engine) as session:
        for entry in entries:
            slide = (await session.scalars(select(Slide).where(Slide.path == entry.path))).first()
            if slide is None:
                slide = Slide(path=entry.path, status="pending")
                session.add(slide)
                await session.flush()
            ids.append(slide.id)
            link = await session.get(RunSlide, (run_id, slide.id))
            if link is not None and slide.status == "failed" and _changed(link, entry):
                link.manifest_mpp, link.label, link.organ = entry.mpp, entry.label, entry.organ
                if link.report_path != entry.report_path:
                    link.report_path, link.report_text = entry.report_path, _report(entry)
                retry.append(str(slide.id))
            if link is None:
                report = _report(entry)
                session.add(
                    RunSlide(
                        run_id=run_id,
                        slide_id=slide.id,
                        manifest_mpp=entry.mpp,
                        report_path=entry.report_path,
                        report_text=report,
                        label=entry.label,
                        organ=entry.organ,
                    )
                )
        await queue.enqueue(
            session,
            run_id,
            [queue.NewWork("tile", str(i)) for i in ids],
            max_attempts=max_attempts,
        )
    if retry:
        await queue.retry_failed(engine, run_id, "tile", keys=retry)
    return ids


def _changed(link: RunSlide, entry: SlideEntry) -> bool:
    """Whether the manifest row says something else than what the slide was tiled with."""
    now = (entry.mpp, entry.label, entry.organ, entry.report_path)
    return now != (link.manifest_mpp, link.label, link.organ, link.report_path)


def _report(entry: SlideEntry) -> str | None:
    try:
        return entry.report_text()
    except PathgenError:
        return None  # the tile stage records the missing report on the slide


@rides_out_outages("finish run")
async def finish_run(engine: AsyncEngine, run_id: str, status: str) -> None:
    async with session_scope(engine) as session:
        run = await session.get(Run, run_id)
        if run is not None:
            run.status = status
            run.owner = None
            run.updated_at = utcnow()
            if status in ("completed", "failed"):
                run.finished_at = utcnow()


async def latest_run_id(engine: AsyncEngine) -> str | None:
    async with session_scope(engine) as session:
        stmt = select(Run.id).order_by(Run.created_at.desc()).limit(1)
        return (await session.scalars(stmt)).first()


async def require_run(engine: AsyncEngine, run_id: str) -> None:
    """Raise :class:`ConfigError` naming the runs there when ``run_id`` is not one."""
    async with session_scope(engine) as session:
        if await session.get(Run, run_id) is None:
            raise ConfigError(await missing_run_message(session, run_id), key="RUN")


async def run_settings(engine: AsyncEngine, run_id: str) -> Settings:
    """The settings snapshot a run was created with."""
    async with session_scope(engine) as session:
        run = await session.get(Run, run_id)
        if run is None:
            raise ConfigError(await missing_run_message(session, run_id), key="RUN")
    try:
        return Settings.model_validate(run.config or {})
    except Exception as exc:  # noqa: BLE001 - pydantic error, reported in one line
        raise ConfigError(
            f"the settings stored with run {run_id!r} are invalid: {exc}", key="runs.config"
        ) from None
