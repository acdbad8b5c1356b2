"""The grid's filter, sort and page parameters, parsed once for every route that keeps them.

Example::

    @router.get("/runs/{run_id}")
    async def run_page(q: GridQuery = Depends(grid_query)) -> ...
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Query

from pathgen.web.grid import REVIEW_STATES, SORTS, GridQuery
from pathgen.web.params import MAX_ROW_ID


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _number(raw: str | None, kind: type[int] | type[float], name: str) -> Any:
    raw = _blank(raw)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a number, not {raw!r}") from None
    if kind is int and not 1 <= value <= MAX_ROW_ID:
        raise HTTPException(400, f"{name} {raw} names no slide")
    return value


def grid_query(
    review: str | None = Query(None, max_length=16),
    slide: str | None = Query(None, max_length=12),
    organ: str | None = Query(None, max_length=64),
    label: str | None = Query(None, max_length=255),
    stage: str | None = Query(None, max_length=32),
    reviewer: str | None = Query(None, max_length=128),
    score_min: str | None = Query(None, max_length=32),
    score_max: str | None = Query(None, max_length=32),
    sort: str = Query("id"),
    after: str | None = Query(None, max_length=64),
    before: str | None = Query(None, max_length=64),
    last: bool = Query(False),
    at: int | None = Query(None, ge=1, le=MAX_ROW_ID),
    pos: int | None = Query(None, ge=1, le=MAX_ROW_ID),
) -> GridQuery:
    """A :class:`GridQuery` from the request's query string (400 for values that make none)."""
    if review not in (None, "", *REVIEW_STATES):
        raise HTTPException(400, f"review filter must be one of {', '.join(REVIEW_STATES)}")
    if sort not in SORTS:
        raise HTTPException(400, f"sort must be one of {', '.join(SORTS)}")
    return GridQuery(
        review=_blank(review),
        slide=_number(slide, int, "slide"),
        organ=_blank(organ),
        label=_blank(label),
        stage=_blank(stage),
        reviewer=_blank(reviewer),
        score_min=_number(score_min, float, "score_min"),
        score_max=_number(score_max, float, "score_max"),
        sort=sort,
        after=_blank(after),
        before=_blank(before),
        last=last,
        at=at,
        pos=pos,
    )
