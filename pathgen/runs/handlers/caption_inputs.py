"""What the caption handlers read, for a whole claimed batch in one read transaction.

For the tiles of a batch: the tile, its slide's path, the run's report for the slide,
and every successful revision of the tile in the run (newest first). The handlers then
find their input and any existing output among those revisions with :func:`latest`,
with no query per item.

Example::

    inputs = await load_inputs(engine, "r1", [12, 13])
    source = latest(inputs[12].revisions, "describe", "caption")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store.engine import read_scope
from pathgen.store.models import CaptionRevision, RunSlide, Slide, Tile

#: The revision columns the handlers use (rows, not ORM objects: cheaper to load).
REVISION_COLUMNS = (
    CaptionRevision.id,
    CaptionRevision.tile_id,
    CaptionRevision.stage,
    CaptionRevision.branch,
    CaptionRevision.parent_id,
    CaptionRevision.text,
    CaptionRevision.provider,
    CaptionRevision.model,
    CaptionRevision.template_hash,
    CaptionRevision.params,
)
TILE_COLUMNS = (
    Tile.id,
    Tile.slide_id,
    Tile.x,
    Tile.y,
    Tile.size,
    Tile.tile_px,
    Slide.path.label("slide_path"),
    RunSlide.report_text,
)


@dataclass(frozen=True)
class TileInputs:
    """One tile of a batch: its row (``id``, ``slide_id``, ``x``, ``y``, ``size``,
    ``tile_px``, ``slide_path``, ``report_text``) and its successful revisions in the run,
    newest first. ``tile`` is None when the tile does not exist."""

    tile: Any
    revisions: tuple[Any, ...]

    @property
    def report(self) -> str | None:
        return self.tile.report_text if self.tile is not None else None


def tile_ids(keys: Iterable[str]) -> list[int]:
    """The tile ids of item keys (``"12"``, ``"12:0"``, ``"12:degraded:0"``)."""
    return sorted({int(key.split(":", 1)[0]) for key in keys})


async def load_inputs(
    engine: AsyncEngine, run_id: str, ids: Sequence[int]
) -> dict[int, TileInputs]:
    """``{tile id: TileInputs}`` for ``ids`` of ``run_id``, read in one read-only transaction."""
    async with read_scope(engine) as session:
        tiles = await session.execute(
            select(*TILE_COLUMNS)
            .join(Slide, Slide.id == Tile.slide_id)
            .outerjoin(RunSlide, (RunSlide.slide_id == Tile.slide_id) & (RunSlide.run_id == run_id))
            .where(Tile.id.in_(ids))
        )
        revisions = await session.execute(
            select(*REVISION_COLUMNS)
            .where(
                CaptionRevision.run_id == run_id,
                CaptionRevision.tile_id.in_(ids),
                CaptionRevision.status == "ok",
            )
            .order_by(CaptionRevision.id.desc())
        )
        by_tile: dict[int, list[Any]] = {i: [] for i in ids}
        for rev in revisions:
            by_tile[rev.tile_id].append(rev)
        rows = {t.id: t for t in tiles}
    return {i: TileInputs(rows.get(i), tuple(by_tile[i])) for i in ids}


def latest(
    revisions: Iterable[Any],
    stage: str,
    branch: str,
    *,
    copy: int | None = None,
    parent_id: int | None = None,
) -> Any | None:
    """The newest revision of ``stage`` on ``branch`` (of degraded ``copy``, made from
    ``parent_id``), or None."""
    for rev in revisions:
        if rev.stage != stage or rev.branch != branch:
            continue
        if parent_id is not None and rev.parent_id != parent_id:
            continue
        if copy is not None and (rev.params or {}).get("copy") != copy:
            continue
        return rev
    return None


def newest_per_describer(revisions: Iterable[Any]) -> list[Any]:
    """The newest successful description of each describer, in describer order."""
    newest: dict[int, Any] = {}
    for rev in revisions:
        if rev.stage == "describe":
            newest.setdefault(int((rev.params or {}).get("describer", 0)), rev)
    return [newest[i] for i in sorted(newest)]
