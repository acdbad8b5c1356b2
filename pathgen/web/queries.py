"""Read models for the web pages: run summaries, a run's tile grid, one tile's history.

Example::

    async with read_scope(engine) as session:
        runs = await run_summaries(session)
        page = await tile_grid(session, "run-1", review="unreviewed", page=1, per_page=48)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.runs.outcome import effective_status
from pathgen.runs.owner import owner_alive
from pathgen.runs.queue import status_counts
from pathgen.store.captions import final_captions, latest_reviews
from pathgen.store.models import (
    CaptionRevision,
    Review,
    Run,
    RunSlide,
    Selection,
    Slide,
    Tile,
)
from pathgen.store.revisions import revision_chain, tile_revisions
from pathgen.store.selections import current_selection
from pathgen.types import PIPELINE_STAGES

REVIEW_STATES = ("unreviewed", "accept", "edit", "reject")


@dataclass
class StageRow:
    stage: str
    queued: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    revisions_ok: int = 0
    revisions_failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


@dataclass
class RunSummary:
    run: Run
    #: What to show: derived from the queue, so a run finished by workers reads completed.
    status: str = ""
    stages: list[StageRow] = field(default_factory=list)
    slides: int = 0
    slides_failed: int = 0
    tiles: int = 0
    selected: int = 0
    captioned: int = 0
    reviews: dict[str, int] = field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.stages)

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.stages)

    @property
    def cost(self) -> float:
        return sum(s.cost for s in self.stages)

    @property
    def unreviewed(self) -> int:
        return max(0, self.captioned - sum(self.reviews.values()))


def _stage_order(stage: str) -> tuple[int, str]:
    extra = ("fuse", "human")
    if stage in PIPELINE_STAGES:
        return (PIPELINE_STAGES.index(stage), stage)
    if stage in extra:
        return (len(PIPELINE_STAGES) + extra.index(stage), stage)
    return (99, stage)


async def run_summaries(session: AsyncSession, run_id: str | None = None) -> list[RunSummary]:
    """Every run (or one), newest first, with per-stage queue and revision counts."""
    stmt = select(Run).order_by(Run.created_at.desc(), Run.id)
    if run_id is not None:
        stmt = stmt.where(Run.id == run_id)
    runs = list(await session.scalars(stmt))
    if not runs:
        return []
    ids = [r.id for r in runs]
    out = {r.id: RunSummary(run=r) for r in runs}
    stages: dict[tuple[str, str], StageRow] = {}

    def row(rid: str, stage: str) -> StageRow:
        return stages.setdefault((rid, stage), StageRow(stage))

    counts = await status_counts(session, ids)
    for r in runs:
        out[r.id].status = effective_status(
            r.status, counts.get(r.id, {}), owner_alive=owner_alive(r.owner)
        )
    for rid, by_stage in counts.items():
        for stage, by in by_stage.items():
            r = row(rid, stage)
            r.queued, r.in_flight = by.get("queued", 0), by.get("leased", 0)
            r.done, r.failed = by.get("done", 0), by.get("failed", 0)
    revs = await session.execute(
        select(
            CaptionRevision.run_id,
            CaptionRevision.stage,
            CaptionRevision.status,
            func.count(),
            func.sum(CaptionRevision.input_tokens),
            func.sum(CaptionRevision.output_tokens),
            func.sum(CaptionRevision.cost),
        )
        .where(CaptionRevision.run_id.in_(ids))
        .group_by(CaptionRevision.run_id, CaptionRevision.stage, CaptionRevision.status)
    )
    for rid, stage, status, n, tin, tout, cost in revs:
        r = row(rid, stage)
        if status == "ok":
            r.revisions_ok += n
        else:
            r.revisions_failed += n
        r.input_tokens += int(tin or 0)
        r.output_tokens += int(tout or 0)
        r.cost += float(cost or 0.0)
    for (rid, _), srow in sorted(stages.items(), key=lambda kv: _stage_order(kv[0][1])):
        out[rid].stages.append(srow)

    slides = await session.execute(
        select(RunSlide.run_id, Slide.status, func.count(), func.sum(Slide.tile_count))
        .join(Slide, Slide.id == RunSlide.slide_id)
        .where(RunSlide.run_id.in_(ids))
        .group_by(RunSlide.run_id, Slide.status)
    )
    for rid, status, n, _tiles in slides:
        out[rid].slides += n
        if status == "failed":
            out[rid].slides_failed += n
    tiles = await session.execute(
        select(RunSlide.run_id, func.count(Tile.id))
        .join(Tile, Tile.slide_id == RunSlide.slide_id)
        .where(RunSlide.run_id.in_(ids))
        .group_by(RunSlide.run_id)
    )
    for rid, n in tiles:
        out[rid].tiles = n
    current = current_selection(list(ids)).where(Selection.kept.is_(True)).subquery()
    selected = await session.execute(
        select(current.c.run_id, func.count()).group_by(current.c.run_id)
    )
    for rid, n in selected:
        out[rid].selected = n
    captioned = await session.execute(
        select(CaptionRevision.run_id, func.count(distinct(CaptionRevision.tile_id)))
        .where(CaptionRevision.run_id.in_(ids))
        .group_by(CaptionRevision.run_id)
    )
    for rid, n in captioned:
        out[rid].captioned = n
    latest = (
        select(func.max(Review.id).label("rid"))
        .where(Review.run_id.in_(ids))
        .group_by(Review.run_id, Review.tile_id)
        .subquery()
    )
    decisions = await session.execute(
        select(Review.run_id, Review.decision, func.count())
        .join(latest, latest.c.rid == Review.id)
        .group_by(Review.run_id, Review.decision)
    )
    for rid, decision, n in decisions:
        out[rid].reviews[decision] = n
    return [out[r.id] for r in runs]


@dataclass
class GridItem:
    tile: Tile
    slide: Slide
    review: str
    reviewer: str | None
    caption: str | None = None
    caption_stage: str | None = None
    score: float | None = None


@dataclass
class GridPage:
    items: list[GridItem]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _latest_review_subquery(run_id: str) -> Any:
    return (
        select(Review.tile_id.label("tile_id"), func.max(Review.id).label("rid"))
        .where(Review.run_id == run_id)
        .group_by(Review.tile_id)
        .subquery()
    )


async def review_counts(session: AsyncSession, run_id: str) -> dict[str, int]:
    """Captioned tiles of the run by review state (``unreviewed`` included)."""
    captioned = (
        select(CaptionRevision.tile_id)
        .where(CaptionRevision.run_id == run_id)
        .group_by(CaptionRevision.tile_id)
        .subquery()
    )
    latest = _latest_review_subquery(run_id)
    rows = await session.execute(
        select(Review.decision, func.count())
        .select_from(captioned)
        .outerjoin(latest, latest.c.tile_id == captioned.c.tile_id)
        .outerjoin(Review, Review.id == latest.c.rid)
        .group_by(Review.decision)
    )
    counts = dict.fromkeys(REVIEW_STATES, 0)
    for decision, n in rows:
        counts[decision or "unreviewed"] = counts.get(decision or "unreviewed", 0) + n
    return counts


async def tile_grid(
    session: AsyncSession, run_id: str, *, review: str | None, page: int, per_page: int
) -> GridPage:
    """One page of the run's captioned tiles (by tile id), optionally of one review state."""
    captioned = (
        select(CaptionRevision.tile_id)
        .where(CaptionRevision.run_id == run_id)
        .group_by(CaptionRevision.tile_id)
        .subquery()
    )
    latest = _latest_review_subquery(run_id)
    base = (
        select(captioned.c.tile_id)
        .outerjoin(latest, latest.c.tile_id == captioned.c.tile_id)
        .outerjoin(Review, Review.id == latest.c.rid)
    )
    if review == "unreviewed":
        base = base.where(Review.id.is_(None))
    elif review:
        base = base.where(Review.decision == review)
    total = int(await session.scalar(select(func.count()).select_from(base.subquery())) or 0)
    ids = list(
        await session.scalars(
            base.order_by(captioned.c.tile_id).limit(per_page).offset((page - 1) * per_page)
        )
    )
    items = await grid_items(session, run_id, ids)
    return GridPage(items, total, page, per_page)


async def grid_items(session: AsyncSession, run_id: str, tile_ids: list[int]) -> list[GridItem]:
    """Grid cards for ``tile_ids`` (in that order; unknown ids are skipped)."""
    if not tile_ids:
        return []
    rows = await session.execute(
        select(Tile, Slide).join(Slide, Slide.id == Tile.slide_id).where(Tile.id.in_(tile_ids))
    )
    found = {tile.id: (tile, slide) for tile, slide in rows}
    finals = await final_captions(session, run_id, list(found))
    reviews = await latest_reviews(session, run_id, list(found))
    items = []
    for tid in tile_ids:
        if tid not in found:
            continue
        tile, slide = found[tid]
        final = finals.get(tid)
        rev = reviews.get(tid)
        items.append(
            GridItem(
                tile=tile,
                slide=slide,
                review=rev.decision if rev else "unreviewed",
                reviewer=rev.reviewer if rev else None,
                caption=final.text if final else None,
                caption_stage=final.stage if final else None,
            )
        )
    return items


@dataclass
class TileDetail:
    tile: Tile
    slide: Slide
    run_id: str | None
    runs: list[str]
    run_slide: RunSlide | None
    revisions: list[CaptionRevision]
    final_id: int | None
    final_chain: list[int]
    reviews: list[Review]
    selection: Selection | None


async def tile_runs(session: AsyncSession, tile: Tile) -> list[str]:
    """Runs this tile has captions in, newest revision first, then runs holding its slide."""
    with_caps = await session.execute(
        select(CaptionRevision.run_id, func.max(CaptionRevision.id))
        .where(CaptionRevision.tile_id == tile.id)
        .group_by(CaptionRevision.run_id)
    )
    ordered = [rid for rid, _ in sorted(with_caps, key=lambda r: -r[1])]
    holding = await session.scalars(
        select(RunSlide.run_id).where(RunSlide.slide_id == tile.slide_id).order_by(RunSlide.run_id)
    )
    return ordered + [r for r in holding if r not in ordered]


async def tile_detail(
    session: AsyncSession, tile_id: int, run_id: str | None = None
) -> TileDetail | None:
    """Everything the tile page shows; ``None`` when the tile does not exist."""
    tile = await session.get(Tile, tile_id)
    if tile is None:
        return None
    slide = await session.get(Slide, tile.slide_id)
    assert slide is not None  # foreign key
    runs = await tile_runs(session, tile)
    if run_id is None and runs:
        run_id = runs[0]
    run_slide = None
    revisions: list[CaptionRevision] = []
    reviews: list[Review] = []
    final_id = None
    chain: list[int] = []
    selection = None
    if run_id is not None:
        run_slide = await session.get(RunSlide, (run_id, slide.id))
        revisions = await tile_revisions(session, tile_id, run_id)
        final = (await final_captions(session, run_id, [tile_id])).get(tile_id)
        if final is not None:
            final_id = final.revision_id
            chain = [r.id for r in await revision_chain(session, final.revision_id)]
        reviews = list(
            await session.scalars(
                select(Review)
                .where(Review.run_id == run_id, Review.tile_id == tile_id)
                .order_by(Review.id.desc())
            )
        )
        selection = await session.scalar(
            select(Selection)
            .where(Selection.run_id == run_id, Selection.tile_id == tile_id)
            .order_by(Selection.round.desc())
            .limit(1)
        )
    return TileDetail(
        tile, slide, run_id, runs, run_slide, revisions, final_id, chain, reviews, selection
    )
