"""The ``tile`` stage: find tissue, cut the grid, persist tiles; queue the slide's embedding."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import SlideError
from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.resources import Resources
from pathgen.store.engine import session_scope
from pathgen.store.models import RunSlide, Slide, Tile, utcnow
from pathgen.store.tiles import insert_tiles

log = logging.getLogger("pathgen.tile")


def _same_manifest_mpp(slide: Slide, manifest_mpp: float | None) -> bool:
    """Whether the manifest's mpp (which wins over the header) is what the tiles were cut at."""
    if manifest_mpp is None:
        return slide.mpp_source != "manifest"
    return math.isclose(slide.mpp or 0.0, manifest_mpp, rel_tol=1e-6)


async def handle_tile(item: Claimed, res: Resources) -> Completion:
    from pathgen.slides import TilingParams, tile_slide, write_preview
    from pathgen.slides.fingerprint import fingerprint_slide

    slide_id = int(item.key)
    settings = res.settings
    params = TilingParams.from_settings(settings.tiling)
    async with session_scope(res.engine) as session:
        slide = await session.get(Slide, slide_id)
        link = await session.get(RunSlide, (item.run_id, slide_id))
    if slide is None:
        raise SlideError(item.key, "missing", "slide row vanished from the database")
    manifest_mpp = link.manifest_mpp if link else None

    if (
        slide.status == "tiled"
        and slide.params_hash == params.params_hash()
        and _same_manifest_mpp(slide, manifest_mpp)
    ):
        try:
            same = await asyncio.to_thread(fingerprint_slide, slide.path) == slide.fingerprint
        except Exception:  # noqa: BLE001 - unreadable now: tile again and record why
            same = False
        if same:
            log.info("%s: already tiled with these parameters, skipping", slide.path)
            return Completion(
                item,
                follow_up=[NewWork("embed", item.key)],
                result={"skipped": True, "tiles": slide.tile_count},
                new_output=False,
            )

    try:
        result = await asyncio.to_thread(
            tile_slide, slide.path, params, manifest_mpp, threads=settings.tiling.workers
        )
    except SlideError as exc:
        log.warning("slide failed: %s", exc)
        return Completion(
            item, persist=_record_failure(slide_id, exc), result={"failed": exc.reason}
        )

    if settings.tiling.preview_dir:
        out = Path(settings.tiling.preview_dir) / f"{slide_id:06d}-{Path(slide.path).stem}.png"
        await asyncio.to_thread(write_preview, result, out)

    async def persist(session: AsyncSession) -> None:
        row = await session.get(Slide, slide_id)
        info = result.slide
        row.fingerprint, row.vendor = info.fingerprint, info.vendor
        row.width, row.height, row.level_count = info.width, info.height, info.level_count
        row.mpp, row.mpp_source = info.mpp, str(info.mpp_source)
        row.params_hash, row.status = params.params_hash(), "tiled"
        row.error_reason = None
        row.error = (
            f"{result.n_failed} tile(s) could not be read and were dropped"
            if result.n_failed
            else None
        )
        row.tile_count = len(result.tiles)
        row.updated_at = utcnow()
        await insert_tiles(session, slide_id, result.tiles)

    return Completion(
        item,
        persist=persist,
        follow_up=[NewWork("embed", item.key)],
        result={"tiles": len(result.tiles), "failed_reads": result.n_failed},
    )


def _record_failure(slide_id: int, exc: SlideError):  # noqa: ANN202 - a persist callback
    reason, message = exc.reason, str(exc)

    async def persist(session: AsyncSession) -> None:
        row = await session.get(Slide, slide_id)
        row.status, row.error_reason, row.error = "failed", reason, message
        row.tile_count = 0
        row.updated_at = utcnow()

    return persist


async def tiles_of_slide(
    session: AsyncSession, slide_id: int, params_mpp: float, tile_px: int
) -> list[Tile]:
    """The slide's tiles at the run's resolution, in id order."""
    stmt = (
        select(Tile)
        .where(Tile.slide_id == slide_id, Tile.mpp == params_mpp, Tile.tile_px == tile_px)
        .order_by(Tile.id)
    )
    return list(await session.scalars(stmt))
