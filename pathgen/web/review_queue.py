"""Review next: hand the curator the next unreviewed tile of their filter, held for them.

``GET /runs/{run}/next?<filters>`` holds a tile (see :mod:`pathgen.curation.holds`) and
redirects to its page in queue mode, whose forms come back here after each action. It is
a GET so that the redirect after an accept lands on it; a hold changes no caption.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pathgen.curation.holds import hold_next
from pathgen.curation.samples import request_sample, second_review_conditions
from pathgen.errors import StoreError
from pathgen.store.engine import session_scope
from pathgen.store.models import CurationTile, Run
from pathgen.web.auth import require
from pathgen.web.csrf import verify_csrf
from pathgen.web.filters import grid_query
from pathgen.web.grid import GridQuery, conditions
from pathgen.web.render import query_url, render

router = APIRouter()


@router.get("/runs/{run_id}/next", name="review_next", response_model=None)
async def review_next(
    request: Request,
    run_id: str,
    q: GridQuery = Depends(grid_query),
    second: bool = Query(False),
) -> RedirectResponse | HTMLResponse:
    """``second``: a tile of the double-review sample that another curator reviewed."""
    user = require(request, "reviewer" if second else "curator")
    filters = {**q.filters(), "review": None}
    extra = conditions(GridQuery(**{**filters, "sort": q.sort}))
    if second:
        extra += second_review_conditions(run_id, user.name)
        filters["second"] = 1
    else:
        extra.append(CurationTile.review == "unreviewed")
    async with session_scope(request.app.state.engine) as session:
        if await session.get(Run, run_id) is None:
            raise HTTPException(404, f"run {run_id!r} does not exist")
        tile_id = await hold_next(session, run_id, user.name, extra=extra)
    if tile_id is None:
        return render(
            request,
            "queue_done.html",
            {"run_id": run_id, "grid_url": query_url(f"/runs/{quote(run_id, safe='')}", filters)},
        )
    target = query_url(f"/tiles/{tile_id}", {"run": run_id, "queue": 1, **filters})
    return RedirectResponse(target, status_code=303)


@router.post("/runs/{run_id}/double-review", name="double_review")
async def double_review(
    request: Request, run_id: str, percent: int = Form(..., ge=1, le=100)
) -> RedirectResponse:
    """Admin: add ``percent`` % of the run's captioned tiles to the double-review sample."""
    await verify_csrf(request)
    user = require(request, "admin")
    async with session_scope(request.app.state.engine) as session:
        if await session.get(Run, run_id) is None:
            raise HTTPException(404, f"run {run_id!r} does not exist")
        try:
            await request_sample(session, run_id, percent=percent, requested_by=user.name)
        except StoreError as exc:
            raise HTTPException(400, str(exc)) from None
    return RedirectResponse(f"/runs/{quote(run_id, safe='')}", status_code=303)
