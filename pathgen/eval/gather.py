"""Read one run's tiles, caption revisions, reviews and instruct items into plain records.

This is the evaluation's only database access (the metrics modules are pure).

Example::

    data = await load_run_data(engine, "run-1")
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import StoreError
from pathgen.eval.records import (
    InstructItemRecord,
    ReviewRecord,
    RevisionRecord,
    RunData,
    TileRef,
)
from pathgen.store.captions import final_captions, latest_reviews
from pathgen.store.engine import read_scope
from pathgen.store.instruct import current_items
from pathgen.store.models import CaptionRevision, Run, Slide, Tile


async def load_run_data(engine: AsyncEngine, run_id: str) -> RunData:
    """Tiles that have a caption revision in ``run_id``, every revision, the newest reviews.

    Raises :class:`StoreError` when the run does not exist.
    """
    async with read_scope(engine) as session:
        run = await session.get(Run, run_id)
        if run is None:
            known = (await session.scalars(select(Run.id).order_by(Run.id).limit(20))).all()
            raise StoreError(
                f"run {run_id!r} not found in the database (runs: {', '.join(known) or 'none'})"
            )
        revs = (
            await session.scalars(
                select(CaptionRevision)
                .where(CaptionRevision.run_id == run_id)
                .order_by(CaptionRevision.id)
            )
        ).all()
        records = [
            RevisionRecord(
                id=r.id,
                tile_id=r.tile_id,
                stage=r.stage,
                text=r.text,
                provider=r.provider,
                model=r.model,
                parent_id=r.parent_id,
                branch=r.branch,
                status=r.status,
                edits=list(r.edits) if r.edits else None,
            )
            for r in revs
        ]
        tile_ids = sorted({r.tile_id for r in records})
        tiles: dict[int, TileRef] = {}
        if tile_ids:
            rows = await session.execute(
                select(Tile, Slide.path)
                .join(Slide, Slide.id == Tile.slide_id)
                .where(Tile.id.in_(tile_ids))
            )
            for tile, path in rows:
                tiles[tile.id] = TileRef(
                    tile_id=tile.id,
                    slide_path=path,
                    x=tile.x,
                    y=tile.y,
                    size=tile.size,
                    tile_px=tile.tile_px,
                )
        reviews = await latest_reviews(session, run_id)
        finals = await final_captions(session, run_id)
        instruct = [
            InstructItemRecord(
                id=i.id,
                tile_id=i.tile_id,
                kind=i.kind,
                verify_status=i.verify_status,
                verify_reason=i.verify_reason,
                yes_no=tuple(str(t["answer_label"]) for t in i.turns if t.get("answer_label")),
                turns=len(i.turns),
                cost=i.cost,
            )
            for i in await current_items(session, run_id)
        ]
        return RunData(
            run_id=run_id,
            config=dict(run.config or {}),
            tiles=tiles,
            revisions=records,
            reviews=[
                ReviewRecord(tile_id=r.tile_id, decision=r.decision, revision_id=r.revision_id)
                for r in sorted(reviews.values(), key=lambda r: r.tile_id)
            ],
            final_revision_ids={t: f.revision_id for t, f in finals.items()},
            instruct=instruct,
        )
