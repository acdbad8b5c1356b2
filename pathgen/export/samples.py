"""What an export contains: a run's final captions with their tiles and provenance.

Example::

    async with read_scope(engine) as session:
        samples = await load_samples(session, "run-1", only_reviewed=True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import ExportError
from pathgen.store.captions import final_captions
from pathgen.store.models import CaptionRevision, Run, RunSlide, Slide, Tile
from pathgen.store.runs import missing_run_message

REVIEWED = ("accept", "edit")
_CHAIN_COLUMNS = (
    CaptionRevision.id,
    CaptionRevision.parent_id,
    CaptionRevision.stage,
    CaptionRevision.branch,
    CaptionRevision.provider,
    CaptionRevision.model,
    CaptionRevision.template_name,
    CaptionRevision.template_hash,
)


@dataclass(frozen=True)
class ExportSample:
    """One tile/caption pair with everything needed to read its pixels and explain it."""

    key: str
    tile_id: int
    run_id: str
    slide_path: str
    slide_fingerprint: str | None
    slide_mpp: float | None
    x: int
    y: int
    size: int
    read_level: int
    mpp: float
    tile_px: int
    caption: str
    revision_id: int
    stage: str
    review: str
    reviewer: str | None
    chain: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    label: str | None = None  # the manifest label of the slide in this run

    def provenance(self) -> dict[str, Any]:
        """The sample's ``.json`` record (without scores, which an export adds)."""
        return {
            "key": self.key,
            "tile_id": self.tile_id,
            "run_id": self.run_id,
            "slide": {
                "path": self.slide_path,
                "fingerprint": self.slide_fingerprint,
                "mpp": self.slide_mpp,
                "label": self.label,
            },
            "x": self.x,
            "y": self.y,
            "size": self.size,
            "read_level": self.read_level,
            "mpp": self.mpp,
            "tile_px": self.tile_px,
            "caption": {
                "revision_id": self.revision_id,
                "stage": self.stage,
                "review": self.review,
                "reviewer": self.reviewer,
            },
            "revisions": list(self.chain),
        }


def sample_key(slide_fingerprint: str | None, slide_path: str, x: int, y: int, size: int) -> str:
    """Stable key of a tile: slide identity (fingerprint, else path hash) and geometry.

    WebDataset splits keys at the first dot, so the key has none.
    """
    ident = slide_fingerprint or hashlib.sha256(slide_path.encode()).hexdigest()
    return f"{ident[:12]}_{x:06d}_{y:06d}_{size:05d}"


async def get_run(session: AsyncSession, run_id: str) -> Run:
    run = await session.get(Run, run_id)
    if run is None:
        raise ExportError(await missing_run_message(session, run_id))
    return run


async def _chains(session: AsyncSession, run_id: str, leaf_ids: list[int]) -> dict[int, tuple]:
    """``{leaf id: (revision dicts, oldest first)}`` walking ``parent_id`` in memory."""
    rows = {
        r.id: r
        for r in (
            await session.execute(select(*_CHAIN_COLUMNS).where(CaptionRevision.run_id == run_id))
        ).all()
    }
    missing = {r.parent_id for r in rows.values() if r.parent_id and r.parent_id not in rows}
    while missing:  # parents stored under another run (rare): fetch them too
        found = (
            await session.execute(
                select(*_CHAIN_COLUMNS).where(CaptionRevision.id.in_(sorted(missing)))
            )
        ).all()
        rows.update({r.id: r for r in found})
        missing = {r.parent_id for r in found if r.parent_id and r.parent_id not in rows}
    out: dict[int, tuple] = {}
    for leaf in leaf_ids:
        chain = []
        current: int | None = leaf
        while current is not None and current in rows:
            r = rows[current]
            chain.append(
                {
                    "id": r.id,
                    "stage": r.stage,
                    "branch": r.branch,
                    "provider": r.provider,
                    "model": r.model,
                    "template_name": r.template_name,
                    "template_hash": r.template_hash,
                }
            )
            current = r.parent_id
        out[leaf] = tuple(chain[::-1])
    return out


async def load_samples(
    session: AsyncSession, run_id: str, *, only_reviewed: bool = False
) -> list[ExportSample]:
    """The run's exportable samples, sorted by key.

    A tile is exported when it has a final caption (a successful ``summarize`` or
    ``human`` revision; failed summaries never count) that is not rejected; with
    ``only_reviewed`` it must also be accepted or edited by a curator.
    """
    await get_run(session, run_id)
    finals = await final_captions(session, run_id)
    keep = {
        tid: fc
        for tid, fc in finals.items()
        if fc.review != "reject" and (not only_reviewed or fc.review in REVIEWED)
    }
    if not keep:
        return []
    tiles = (
        await session.execute(
            select(Tile, Slide, RunSlide.label)
            .join(Slide, Slide.id == Tile.slide_id)
            .outerjoin(RunSlide, (RunSlide.slide_id == Slide.id) & (RunSlide.run_id == run_id))
            .where(Tile.id.in_(sorted(keep)))
        )
    ).all()
    chains = await _chains(session, run_id, [fc.revision_id for fc in keep.values()])
    samples = []
    for tile, slide, label in tiles:
        fc = keep[tile.id]
        samples.append(
            ExportSample(
                key=sample_key(slide.fingerprint, slide.path, tile.x, tile.y, tile.size),
                tile_id=tile.id,
                run_id=run_id,
                slide_path=slide.path,
                slide_fingerprint=slide.fingerprint,
                slide_mpp=slide.mpp,
                x=tile.x,
                y=tile.y,
                size=tile.size,
                read_level=tile.read_level,
                mpp=tile.mpp,
                tile_px=tile.tile_px,
                caption=fc.text,
                revision_id=fc.revision_id,
                stage=fc.stage,
                review=fc.review,
                reviewer=fc.reviewer,
                chain=chains[fc.revision_id],
                label=label,
            )
        )
    samples.sort(key=lambda s: (s.key, s.tile_id))
    return samples
