"""Read models for the web pages: run summaries, grid cards, one tile's history.

Example::

    async with read_scope(engine) as session:
        runs = await run_summaries(session)
        cards = await grid_items(session, "run-1", [7, 8, 9])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.runs.outcome import effective_status
from pathgen.runs.owner import owner_alive
from pathgen.store.captions import final_captions, latest_reviews
from pathgen.store.models import (
    CaptionRevision,
    Review,
    Run,
    RunSlide,
    RunTally,
    Selection,
    Slide,
    Tile,
    WorkItem,
    utcnow,
)
from pathgen.store.revisions import revision_chain, tile_revisions
from pathgen.types import PIPELINE_STAGES


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


async def _queue_counts(
    session: AsyncSession, ids: list[str]
) -> dict[tuple[str, str], dict[str, int]]:
    """``{(run, stage): {status: n}}``: open items through the partial index, done ones
    from the tallies; an expired lease counts as queued."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    open_rows = await session.execute(
        select(WorkItem.run_id, WorkItem.stage, WorkItem.status, func.count())
        .where(WorkItem.run_id.in_(ids), text("status <> 'done'"))
        .group_by(WorkItem.run_id, WorkItem.stage, WorkItem.status)
    )
    for rid, stage, status, n in open_rows:
        out.setdefault((rid, stage), {})[status] = n
    expired = await session.execute(
        select(WorkItem.run_id, WorkItem.stage, func.count())
        .where(
            WorkItem.run_id.in_(ids),
            text("status <> 'done'"),  # through the partial index: open items only
            WorkItem.status == "leased",
            WorkItem.lease_expires_at < utcnow(),
        )
        .group_by(WorkItem.run_id, WorkItem.stage)
    )
    for rid, stage, n in expired:
        by = out[(rid, stage)]
        by["leased"] -= n
        by["queued"] = by.get("queued", 0) + n
    done = await session.execute(
        select(RunTally.run_id, RunTally.key, RunTally.n).where(
            RunTally.run_id.in_(ids), RunTally.kind == "work_done", RunTally.n > 0
        )
    )
    for rid, stage, n in done:
        out.setdefault((rid, stage), {})["done"] = int(n)
    return out


async def run_summaries(session: AsyncSession, run_id: str | None = None) -> list[RunSummary]:
    """Every run (or one), newest first, with per-stage queue and revision counts.

    Reads tallies kept as rows change (see :class:`~pathgen.store.models.RunTally`) and
    per-slide rows, never a row per tile, so it costs the same at any run size.
    """
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

    queue = await _queue_counts(session, ids)
    by_run: dict[str, dict[str, dict[str, int]]] = {}
    for (rid, stage), by in queue.items():
        by_run.setdefault(rid, {})[stage] = by
        r = row(rid, stage)
        r.queued, r.in_flight = by.get("queued", 0), by.get("leased", 0)
        r.done, r.failed = by.get("done", 0), by.get("failed", 0)
    for r in runs:
        out[r.id].status = effective_status(
            r.status, by_run.get(r.id, {}), owner_alive=owner_alive(r.owner)
        )
    tallies = await session.execute(
        select(
            RunTally.run_id,
            RunTally.kind,
            RunTally.key,
            RunTally.n,
            RunTally.input_tokens,
            RunTally.output_tokens,
            RunTally.cost,
        ).where(RunTally.run_id.in_(ids))
    )
    newest_kept: dict[tuple[str, str], tuple[int, int]] = {}
    for rid, kind, key, n, tin, tout, cost in tallies:
        summary = out[rid]
        if kind == "revisions":
            stage, _, status = key.rpartition(":")
            r = row(rid, stage)
            if status == "ok":
                r.revisions_ok += n
            else:
                r.revisions_failed += n
            r.input_tokens += int(tin)
            r.output_tokens += int(tout)
            r.cost += float(cost)
        elif kind == "review":
            summary.captioned += n
            if key != "unreviewed" and n:
                summary.reviews[key] = n
        elif kind == "kept":
            slide, _, rnd = key.partition(":")
            seen = newest_kept.get((rid, slide))
            if seen is None or int(rnd) > seen[0]:
                newest_kept[(rid, slide)] = (int(rnd), n)
    for (rid, _), (_, n) in newest_kept.items():
        out[rid].selected += n
    for (rid, _), srow in sorted(stages.items(), key=lambda kv: _stage_order(kv[0][1])):
        out[rid].stages.append(srow)

    slides = await session.execute(
        select(RunSlide.run_id, Slide.status, func.count(), func.sum(Slide.tile_count))
        .join(Slide, Slide.id == RunSlide.slide_id)
        .where(RunSlide.run_id.in_(ids))
        .group_by(RunSlide.run_id, Slide.status)
    )
    for rid, status, n, tiles in slides:
        out[rid].slides += n
        out[rid].tiles += int(tiles or 0)
        if status == "failed":
            out[rid].slides_failed += n
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
class FilterOptions:
    organs: list[str]
    labels: list[str]


async def filter_options(session: AsyncSession, run_id: str) -> FilterOptions:
    """The run's organs and labels to filter by (from its per-slide rows)."""
    where = RunSlide.run_id == run_id
    organs = await session.scalars(select(RunSlide.organ).where(where).distinct())
    labels = await session.scalars(select(RunSlide.label).where(where).distinct())
    return FilterOptions(
        organs=sorted(o for o in organs if o), labels=sorted(lab for lab in labels if lab)
    )


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
