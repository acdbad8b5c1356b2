"""A run's tile grid at any run size: filters and sorts on indexed columns, keyset pages.

The grid reads ``curation_tiles`` (one row per captioned tile, kept by triggers; see
:class:`~pathgen.store.models.CurationTile`). A page is found from a cursor (the sort
key of the row before or after it), so page 1, the next page and the last page each
read about one page of index entries whatever the run's size. Jumping to a position
("go to tile #N") in the tile-id order, with a review state or no filter, adds up the
run's ``review_block`` tallies (captioned tiles per review state and block of
:data:`BLOCK` tile ids) to find the block holding position N, then skips at most one
block's index entries; with other filters or the score order it skips N index entries.
Totals come from the run's tallies when the filter is a review state or nothing; other
filters show no total.

Example::

    grid = await grid_page(session, "run-1", GridQuery(review="unreviewed"), per_page=48)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.store.models import CurationTile, RunTally

REVIEW_STATES = ("unreviewed", "accept", "edit", "reject")
#: Tile ids per block of the ``review_block`` tallies (db/versions/0009_grid_positions.py).
BLOCK = 1024
SORTS = {"id": "tile id ↑", "-id": "tile id ↓", "score": "CLIP score ↑", "-score": "CLIP score ↓"}


@dataclass(frozen=True)
class GridQuery:
    """What the curator asked for: filters, sort and where the page starts."""

    review: str | None = None
    slide: int | None = None
    organ: str | None = None
    label: str | None = None
    stage: str | None = None
    reviewer: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    sort: str = "id"
    after: str | None = None  # cursor: the page starts after this key
    before: str | None = None  # cursor: the page ends before this key
    last: bool = False
    at: int | None = None  # 1-based position to jump to
    pos: int | None = None  # position of the page's first tile, carried by the links

    def filters(self) -> dict[str, Any]:
        """The filter and sort parameters (for links that keep them)."""
        keys = ("review", "slide", "organ", "label", "stage", "reviewer", "score_min")
        out = {k: getattr(self, k) for k in (*keys, "score_max")}
        out["sort"] = self.sort if self.sort != "id" else None
        return out

    @property
    def only_review(self) -> bool:
        """Whether the only filter is the review state (so tallies give the total)."""
        others = (self.slide, self.organ, self.label, self.stage, self.reviewer)
        return all(v is None for v in (*others, self.score_min, self.score_max))


@dataclass
class KeysetPage:
    tile_ids: list[int]
    first_key: str | None
    last_key: str | None
    has_prev: bool
    has_next: bool
    total: int | None
    position: int | None  # 1-based position of the first tile, when known
    query: GridQuery = field(default_factory=GridQuery)


def _key(sort: str, tile_id: int, score: float | None) -> str:
    return f"{tile_id}" if sort.endswith("id") else f"{score!r}:{tile_id}"


def _parse_key(sort: str, raw: str) -> tuple[Any, ...]:
    try:
        if sort.endswith("id"):
            return (int(raw),)
        score, tile = raw.rsplit(":", 1)
        return (float(score), int(tile))
    except ValueError:
        raise ValueError(f"bad page cursor {raw!r}") from None


def conditions(q: GridQuery) -> list[Any]:
    """``q``'s filters as conditions on :class:`CurationTile` (the run not included)."""
    c = CurationTile
    out: list[Any] = []
    for column, value in (
        (c.review, q.review),
        (c.slide_id, q.slide),
        (c.organ, q.organ),
        (c.label, q.label),
        (c.final_stage, q.stage),
        (c.reviewer, q.reviewer),
    ):
        if value is not None:
            out.append(column == value)
    if q.score_min is not None:
        out.append(c.score >= q.score_min)
    if q.score_max is not None:
        out.append(c.score <= q.score_max)
    if q.sort.endswith("score"):
        out.append(c.score.is_not(None))
    return out


def _filtered(run_id: str, q: GridQuery) -> Select[Any]:
    c = CurationTile
    return select(c.tile_id, c.score).where(c.run_id == run_id, *conditions(q))


async def review_totals(session: AsyncSession, run_id: str) -> dict[str, int]:
    """Captioned tiles of the run by review state, from the tallies."""
    rows = await session.execute(
        select(RunTally.key, RunTally.n).where(RunTally.run_id == run_id, RunTally.kind == "review")
    )
    counts = dict.fromkeys(REVIEW_STATES, 0)
    for key, n in rows:
        counts[key] = counts.get(key, 0) + int(n)
    return counts


async def grid_page(
    session: AsyncSession, run_id: str, q: GridQuery, *, per_page: int
) -> KeysetPage:
    """One page of the run's captioned tiles matching ``q``."""
    c = CurationTile
    cols = (c.tile_id,) if q.sort.endswith("id") else (c.score, c.tile_id)
    desc = q.sort.startswith("-")
    base = _filtered(run_id, q)
    total = None
    if q.only_review:
        totals = await review_totals(session, run_id)
        total = totals.get(q.review, 0) if q.review else sum(totals.values())
    backwards = q.last or q.before is not None
    forward_order = [col.desc() for col in cols] if desc else [col.asc() for col in cols]
    backward_order = [col.asc() for col in cols] if desc else [col.desc() for col in cols]
    stmt = base.order_by(*(backward_order if backwards else forward_order))
    row = tuple_(*cols) if len(cols) > 1 else cols[0]
    position = None
    if q.before is not None:
        key = _parse_key(q.sort, q.before)
        bound = tuple_(*key) if len(key) > 1 else key[0]
        stmt = stmt.where(row > bound if desc else row < bound)
    elif q.after is not None:
        key = _parse_key(q.sort, q.after)
        bound = tuple_(*key) if len(key) > 1 else key[0]
        stmt = stmt.where(row < bound if desc else row > bound)
    elif q.at is not None and not q.last:
        position = max(1, q.at)
        skip = position - 1
        if q.only_review and q.sort.endswith("id"):
            bound, skip = await _block_of(session, run_id, q.review, position, desc=desc)
            stmt = stmt.where(c.tile_id < bound if desc else c.tile_id >= bound)
        stmt = stmt.offset(skip)
    elif not q.last:
        position = 1
    if position is None and not q.last:
        position = q.pos
    rows = list(await session.execute(stmt.limit(per_page + 1)))
    more = len(rows) > per_page
    rows = rows[:per_page]
    if backwards:
        rows.reverse()
    if q.last and total is not None:
        position = max(1, total - len(rows) + 1)
    ids = [r.tile_id for r in rows]
    first = _key(q.sort, rows[0].tile_id, rows[0].score) if rows else None
    last = _key(q.sort, rows[-1].tile_id, rows[-1].score) if rows else None
    if backwards:
        has_prev, has_next = more, not q.last
    else:
        has_prev = q.after is not None or bool(position and position > 1)
        has_next = more
    return KeysetPage(ids, first, last, has_prev, has_next, total, position, q)


async def _block_of(
    session: AsyncSession, run_id: str, review: str | None, position: int, *, desc: bool
) -> tuple[int, int]:
    """Where position ``position`` (1-based) of the tile-id order starts: a tile-id bound
    (the first id of its block; with ``desc``, the id after its block) and how many of the
    tiles from there come before it. Past the end: a bound past every tile, 0."""
    key = RunTally.key
    stmt = select(key, RunTally.n).where(
        RunTally.run_id == run_id, RunTally.kind == "review_block", RunTally.n > 0
    )
    if review is not None:
        stmt = stmt.where(key.startswith(f"{review}:", autoescape=True))
    per_block: dict[int, int] = {}
    for raw, n in await session.execute(stmt):
        block = int(raw.rpartition(":")[2])
        per_block[block] = per_block.get(block, 0) + int(n)
    before = 0
    for block in sorted(per_block, reverse=desc):
        if before + per_block[block] >= position:
            return ((block + 1) * BLOCK if desc else block * BLOCK), position - 1 - before
        before += per_block[block]
    return (-1 if desc else (max(per_block, default=0) + 1) * BLOCK), 0


async def neighbours(
    session: AsyncSession, run_id: str, q: GridQuery, tile_id: int
) -> tuple[int | None, int | None]:
    """The tiles before and after ``tile_id`` in the grid of ``q`` (``None`` at the ends)."""
    score = await session.scalar(
        select(CurationTile.score).where(
            CurationTile.run_id == run_id, CurationTile.tile_id == tile_id
        )
    )
    if score is None and q.sort.endswith("score"):
        return None, None
    key = _key(q.sort, tile_id, score)
    before = await grid_page(session, run_id, with_cursor(q, before=key), per_page=1)
    after = await grid_page(session, run_id, with_cursor(q, after=key), per_page=1)
    return (
        before.tile_ids[0] if before.tile_ids else None,
        after.tile_ids[0] if after.tile_ids else None,
    )


def with_cursor(q: GridQuery, **changes: Any) -> GridQuery:
    """``q`` with a new page position (the filters kept)."""
    reset = {"after": None, "before": None, "last": False, "at": None, "pos": None}
    return replace(q, **{**reset, **changes})
