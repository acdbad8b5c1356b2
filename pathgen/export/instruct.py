"""What an instruct export contains: a run's verified, unrejected instruct items, split by slide.

An item is exported when it is current (no curator edit supersedes it), passed
verification, its newest review is not ``reject`` (with ``only_reviewed``: is ``accept``
or ``edit``), and its tile still has a final caption that is not rejected. Items are
ordered by tile key, then id. Whole slides go to ``train``, ``val`` or ``test``
(:func:`split_slides`), so no slide has tiles on two sides.

Example::

    async with read_scope(engine) as session:
        records = await load_instruct_records(session, "run-1")
    sides = split_slides(records, val=0.1, test=0.1, seed=0)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import ExportError
from pathgen.export.samples import REVIEWED, get_run, sample_key
from pathgen.store.captions import final_captions
from pathgen.store.instruct import current_items, latest_item_reviews
from pathgen.store.models import Slide, Tile

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class InstructRecord:
    """One exportable item with its tile's geometry and its provenance."""

    item_id: int
    key: str
    slide: str  # the slide's identity: fingerprint, else a hash of its path
    slide_path: str
    tile_id: int
    x: int
    y: int
    size: int
    tile_px: int
    kind: str
    turns: tuple[dict[str, Any], ...]
    provenance: dict[str, Any]

    @property
    def record_id(self) -> str:
        return f"{self.key}_i{self.item_id}"


async def load_instruct_records(
    session: AsyncSession, run_id: str, *, only_reviewed: bool = False
) -> list[InstructRecord]:
    """The run's exportable items (see the module docstring), by tile key and item id."""
    await get_run(session, run_id)
    finals = {
        t: f for t, f in (await final_captions(session, run_id)).items() if f.review != "reject"
    }
    items = [
        i
        for i in await current_items(session, run_id, sorted(finals))
        if i.verify_status == "passed"
    ]
    reviews = await latest_item_reviews(session, run_id, [i.id for i in items])
    decision = {i.id: reviews[i.id].decision if i.id in reviews else "unreviewed" for i in items}
    items = [
        i
        for i in items
        if decision[i.id] != "reject" and (not only_reviewed or decision[i.id] in REVIEWED)
    ]
    tiles = {
        tile.id: (tile, slide)
        for tile, slide in await session.execute(
            select(Tile, Slide)
            .join(Slide, Slide.id == Tile.slide_id)
            .where(Tile.id.in_(sorted({i.tile_id for i in items})))
        )
    }
    out = []
    for item in items:
        tile, slide = tiles[item.tile_id]
        out.append(
            InstructRecord(
                item_id=item.id,
                key=sample_key(slide.fingerprint, slide.path, tile.x, tile.y, tile.size),
                slide=slide.fingerprint or hashlib.sha256(slide.path.encode()).hexdigest(),
                slide_path=slide.path,
                tile_id=tile.id,
                x=tile.x,
                y=tile.y,
                size=tile.size,
                tile_px=tile.tile_px,
                kind=item.kind,
                turns=tuple(item.turns),
                provenance={
                    "item_id": item.id,
                    "run_id": run_id,
                    "tile_id": tile.id,
                    "revision_id": item.revision_id,
                    "kind": item.kind,
                    "provider": item.provider,
                    "model": item.model,
                    "template_name": item.template_name,
                    "template_hash": item.template_hash,
                    "verifier": item.verifier,
                    "review": decision[item.id],
                },
            )
        )
    out.sort(key=lambda r: (r.key, r.item_id))
    return out


def split_slides(
    records: list[InstructRecord], *, val: float = 0.1, test: float = 0.1, seed: int = 0
) -> dict[str, list[InstructRecord]]:
    """Records per side, whole slides per side, the same for the same slides and options.

    Slides are ranked by a seeded hash of their identity; the first ``round(n * test)`` go
    to ``test``, the next ``round(n * val)`` to ``val`` (at least one each when the
    fraction is above 0 and there are three slides or more), the rest to ``train``.
    """
    if val < 0 or test < 0 or val + test >= 1:
        raise ExportError(f"--val {val} and --test {test} must be >= 0 and sum to less than 1")
    slides = sorted(
        {r.slide for r in records},
        key=lambda s: hashlib.sha256(f"{seed}|{s}".encode()).hexdigest(),
    )
    n = len(slides)

    def count(fraction: float) -> int:
        k = round(n * fraction)
        return max(k, 1) if fraction > 0 and n >= 3 else k

    n_test, n_val = count(test), count(val)
    side = {s: "test" for s in slides[:n_test]}
    side.update({s: "val" for s in slides[n_test : n_test + n_val]})
    out: dict[str, list[InstructRecord]] = {s: [] for s in SPLITS}
    for r in records:
        out[side.get(r.slide, "train")].append(r)
    return out
