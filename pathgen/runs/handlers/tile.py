"""The ``tile`` stage: find tissue, cut the grid, persist tiles; queue the slide's embedding.

A slide that cannot be tiled (missing, unreadable, no µm/px, no tissue, …) parks its item
at once with the reason, recorded on the slide row too: the run then ends with parked
items (exit 3) and ``pathgen retry RUN --stage tile`` tries the slides again after a fix.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import SlideError
from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.resources import Resources
from pathgen.runs.worker import StageFailed
from pathgen.store.bulk import Rows
from pathgen.store.models import RunSlide, Slide, Tile, utcnow
from pathgen.store.tiles import tile_rows

if TYPE_CHECKING:
    from pathgen.settings import TilingSettings
    from pathgen.slides import TilingParams, TilingResult

log = logging.getLogger("pathgen.tile")


def _same_manifest_mpp(slide: Slide, manifest_mpp: float | None) -> bool:
    """Whether the manifest's mpp (which wins over the header) is what the tiles were cut at."""
    if manifest_mpp is None:
        return slide.mpp_source != "manifest"
    return math.isclose(slide.mpp or 0.0, manifest_mpp, rel_tol=1e-6)


_slides = Slide.__table__
#: A tiled slide's row (the rows of a completion batch in one statement).
_SLIDE_TILED = update(_slides).where(_slides.c.id == bindparam("b_id"))

#: Slides a worker claims beyond those it is tiling: one claim transaction (which also
#: reads their rows, :func:`read_slides`) serves several slides. Their attempt counts from
#: the claim: a worker that dies (killed, out of memory) costs them one too.
PREFETCH = 8
#: How long a tiled slide waits for others to join its completion transaction (its rows,
#: tiles and follow-up go in with theirs: one transaction for several quick slides, while
#: the commit still overlaps the tiling of the next ones).
COMMIT_WAIT_S = 0.1


async def read_slides(
    session: AsyncSession, items: Sequence[Claimed]
) -> dict[int, tuple[Slide, float | None]]:
    """``{item id: (slide row, the run's manifest mpp)}`` of claimed tile items, in one
    query (run inside the claim transaction); a slide row that is gone has no entry."""
    runs = {item.run_id for item in items}
    rows = await session.execute(
        select(Slide, RunSlide.run_id, RunSlide.manifest_mpp)
        .outerjoin(RunSlide, (RunSlide.slide_id == Slide.id) & RunSlide.run_id.in_(runs))
        .where(Slide.id.in_({int(item.key) for item in items}))
    )
    slides: dict[int, Slide] = {}
    mpps: dict[tuple[str | None, int], float | None] = {}
    for slide, run_id, manifest_mpp in rows:
        slides[slide.id] = slide
        mpps[(run_id, slide.id)] = manifest_mpp
    return {
        item.id: (slides[sid], mpps.get((item.run_id, sid)))
        for item in items
        if (sid := int(item.key)) in slides
    }


async def handle_tile(
    item: Claimed, res: Resources, found: tuple[Slide, float | None] | None
) -> Completion:
    """Tile the item's slide; ``found`` is what :func:`read_slides` read for it."""
    from pathgen.slides import TilingParams
    from pathgen.slides.fingerprint import fingerprint_slide

    slide_id = int(item.key)
    settings = res.settings
    params = TilingParams.from_settings(settings.tiling)
    if found is None:
        raise SlideError(item.key, "missing", "slide row vanished from the database")
    slide, manifest_mpp = found

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

    preview = None
    if settings.tiling.preview_dir:
        preview = Path(settings.tiling.preview_dir) / f"{slide_id:06d}-{Path(slide.path).stem}.png"
    try:  # one thread hand-off: tiling and the preview
        result = await asyncio.to_thread(
            _tile, slide.path, params, manifest_mpp, settings.tiling, preview
        )
    except SlideError as exc:
        log.warning("slide failed: %s", exc)
        raise StageFailed(
            f"{exc.reason}: {exc}", retryable=False, persist=_record_failure(slide_id, exc)
        ) from None

    info = result.slide
    values = {
        "fingerprint": info.fingerprint,
        "reader": info.reader,
        "vendor": info.vendor,
        "width": info.width,
        "height": info.height,
        "level_count": info.level_count,
        "mpp": info.mpp,
        "mpp_source": str(info.mpp_source),
        "params_hash": params.params_hash(),
        "status": "tiled",
        "error_reason": None,
        "error": (
            f"{result.n_failed} tile(s) could not be read and were dropped"
            if result.n_failed
            else None
        ),
        "tile_count": len(result.tiles),
    }

    return Completion(
        item,
        rows=[
            Rows(_SLIDE_TILED, [{"b_id": slide_id, **values, "updated_at": utcnow()}]),
            tile_rows(res.engine.dialect.name, slide_id, result.tiles),
        ],
        follow_up=[NewWork("embed", item.key)],
        result={"tiles": len(result.tiles), "failed_reads": result.n_failed},
    )


def _tile(
    path: str,
    params: TilingParams,
    manifest_mpp: float | None,
    tiling: TilingSettings,
    preview: Path | None,
) -> TilingResult:
    """Tile the slide and write its preview (run in a worker thread)."""
    from pathgen.slides import tile_slide, write_preview

    result = tile_slide(
        path, params, manifest_mpp, threads=tiling.workers, verify=tiling.verify_tiles
    )
    if preview is not None:
        write_preview(result, preview)
    return result


def _record_failure(slide_id: int, exc: SlideError):  # noqa: ANN202 - a persist callback
    reason, message = exc.reason, str(exc)

    values = {"status": "failed", "error_reason": reason, "error": message, "tile_count": 0}
    if exc.reader is not None:
        values["reader"] = exc.reader

    async def persist(session: AsyncSession) -> None:
        await session.execute(
            update(Slide).where(Slide.id == slide_id).values(**values, updated_at=utcnow())
        )

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
