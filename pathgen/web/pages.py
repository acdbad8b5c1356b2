"""The HTML pages: runs dashboard, a run's tile grid, a tile's page, search."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from pathgen.curation import search_captions
from pathgen.curation.holds import holder
from pathgen.curation.samples import blind_revision
from pathgen.curation.search import CaptionHit, query_notice
from pathgen.errors import PathgenError
from pathgen.store.engine import read_scope
from pathgen.store.models import CaptionRevision, Run
from pathgen.web.diffs import diff_stats, word_diff
from pathgen.web.filters import grid_query
from pathgen.web.grid import REVIEW_STATES, SORTS, GridQuery, grid_page, neighbours, review_totals
from pathgen.web.params import RowId
from pathgen.web.queries import (
    GridItem,
    filter_options,
    grid_items,
    run_summaries,
    tile_detail,
)
from pathgen.web.render import query_url, render
from pathgen.web.semantic import search_by_meaning

router = APIRouter()
PER_PAGE = 48
SEARCH_LIMIT = 48
SEARCH_MODES = ("text", "meaning")


def slide_missing(path: str) -> bool:
    return not Path(path).exists()


@router.get("/", response_class=HTMLResponse, name="dashboard")
async def dashboard(request: Request) -> HTMLResponse:
    async with read_scope(request.app.state.engine) as session:
        runs = await run_summaries(session)
    return render(request, "dashboard.html", {"runs": runs})


async def _run_or_404(request: Request, run_id: str) -> Run:
    async with read_scope(request.app.state.engine) as session:
        run = await session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id!r} does not exist")
    return run


def _mark_missing(items: list[GridItem]) -> dict[int, bool]:
    return {sid: slide_missing(path) for sid, path in {(i.slide.id, i.slide.path) for i in items}}


@router.get("/runs/{run_id}", response_class=HTMLResponse, name="run")
async def run_page(
    request: Request, run_id: str, q: GridQuery = Depends(grid_query)
) -> HTMLResponse:
    await _run_or_404(request, run_id)
    async with read_scope(request.app.state.engine) as session:
        summary = (await run_summaries(session, run_id))[0]
        try:
            grid = await grid_page(session, run_id, q, per_page=PER_PAGE)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        items = await grid_items(session, run_id, grid.tile_ids)
        counts = await review_totals(session, run_id)
        options = await filter_options(session, run_id)
    return render(
        request,
        "run.html",
        {
            "summary": summary,
            "run": summary.run,
            "grid": grid,
            "items": items,
            "q": q,
            "filters": q.filters(),
            "counts": counts,
            "states": REVIEW_STATES,
            "sorts": SORTS,
            "options": options,
            "per_page": PER_PAGE,
            "missing": _mark_missing(items),
        },
    )


@dataclass
class RevisionView:
    rev: CaptionRevision
    parent: CaptionRevision | None
    diff: Markup | None
    inserted: int
    deleted: int
    in_final: bool
    is_final: bool


@router.get("/tiles/{tile_id}", response_class=HTMLResponse, name="tile")
async def tile_page(
    request: Request,
    tile_id: RowId,
    run: str | None = Query(None, max_length=64),
    queue: bool = Query(False),
    second: bool = Query(False),
    q: GridQuery = Depends(grid_query),
) -> HTMLResponse:
    """The tile, its caption history and the review form; ``queue``: opened by "Review
    next" (after an action the next tile of the filter opens); ``second``: by "Second
    review next", blind while the tile waits for this reviewer's second review (the
    revision the first curator judged, without their decision, edit or later revisions)."""
    filters = q.filters()
    prev_id = next_id = None
    held = None
    judged = None
    user = request.state.user
    async with read_scope(request.app.state.engine) as session:
        detail = await tile_detail(session, tile_id, run or None)
        if detail is None:
            raise HTTPException(404, f"tile {tile_id} does not exist")
        if run and run not in detail.runs:
            raise HTTPException(404, f"tile {tile_id} is not part of run {run!r}")
        if detail.run_id is not None:
            try:
                prev_id, next_id = await neighbours(session, detail.run_id, q, tile_id)
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
            held = await holder(session, detail.run_id, tile_id)
            if second and user.may("reviewer"):
                judged = await blind_revision(session, detail.run_id, tile_id, user.name)
    by_id = {r.id: r for r in detail.revisions}
    final_id, chain, revisions = detail.final_id, detail.final_chain, detail.revisions
    blind = judged is not None and judged in by_id
    if blind:
        final_id, chain = judged, _ancestors(by_id, judged)
        revisions = [r for r in revisions if r.id <= judged and r.stage != "human"]
    views = []
    for rev in revisions:
        parent = by_id.get(rev.parent_id) if rev.parent_id is not None else None
        ins, dele = diff_stats(parent.text, rev.text) if parent else (0, 0)
        views.append(
            RevisionView(
                rev=rev,
                parent=parent,
                diff=word_diff(parent.text, rev.text) if parent else None,
                inserted=ins,
                deleted=dele,
                in_final=rev.id in chain,
                is_final=rev.id == final_id,
            )
        )
    final = by_id.get(final_id) if final_id is not None else None
    reviews = [] if blind else detail.reviews
    review = reviews[0] if reviews else None
    slide = detail.slide
    rect = None
    if slide.width and slide.height:
        t = detail.tile
        rect = {
            "left": 100 * t.x / slide.width,
            "top": 100 * t.y / slide.height,
            "width": max(0.6, 100 * t.size / slide.width),
            "height": max(0.6, 100 * t.size / slide.height),
        }
    return render(
        request,
        "tile.html",
        {
            "d": detail,
            "tile": detail.tile,
            "slide": slide,
            "run_id": detail.run_id,
            "views": views,
            "final": final,
            "reviews": reviews,
            "blind": blind,
            "state": review.decision if review else "unreviewed",
            "missing": slide_missing(slide.path),
            "rect": rect,
            "filters": filters,
            "queue": queue,
            "prev_id": prev_id,
            "next_id": next_id,
            "held": held if held and held[0] != user.name else None,
            "queue_url": query_url(
                f"/runs/{quote(detail.run_id or '', safe='')}/next",
                {**filters, "second": 1 if second else None},
            ),
            "next_url": request.url.path
            + (f"?run={quote(detail.run_id, safe='')}" if detail.run_id else ""),
        },
    )


def _ancestors(by_id: dict[int, CaptionRevision], rev_id: int) -> set[int]:
    """``rev_id`` and the revisions it was made from."""
    out: set[int] = set()
    rev = by_id.get(rev_id)
    while rev is not None and rev.id not in out:
        out.add(rev.id)
        rev = by_id.get(rev.parent_id) if rev.parent_id is not None else None
    return out


def snippet_html(hit: CaptionHit) -> Markup:
    """The hit's snippet, escaped, with matched words in ``<mark>``."""
    return Markup("").join(
        Markup("<mark>{}</mark>").format(t) if is_match else escape(t)
        for t, is_match in hit.snippet_parts()
    )


@router.get("/runs/{run_id}/search", response_class=HTMLResponse, name="search")
async def search_page(
    request: Request,
    run_id: str,
    q: str = Query("", max_length=500),
    mode: str = Query("text"),
) -> HTMLResponse:
    if mode not in SEARCH_MODES:
        raise HTTPException(400, f"search mode must be one of {', '.join(SEARCH_MODES)}")
    run = await _run_or_404(request, run_id)
    q = q.strip()
    items: list[GridItem] = []
    snippets: dict[int, Markup] = {}
    error = None
    notice = query_notice(q) if q and mode == "text" else None
    if q and mode == "text":
        async with read_scope(request.app.state.engine) as session:
            hits = await search_captions(session, q, run_id=run_id, limit=SEARCH_LIMIT * 4)
            order: list[int] = []
            for hit in hits:
                if hit.tile_id not in snippets:
                    order.append(hit.tile_id)
                    snippets[hit.tile_id] = Markup("<span class=stage>{}</span> ").format(
                        hit.stage
                    ) + snippet_html(hit)
            items = await grid_items(session, run_id, order[:SEARCH_LIMIT])
    elif q:
        try:
            hits_m = await search_by_meaning(
                request.app.state.engine, request.app.state.clip_models, run, q, SEARCH_LIMIT
            )
        except PathgenError as exc:
            error = str(exc)
        else:
            async with read_scope(request.app.state.engine) as session:
                items = await grid_items(session, run_id, [tid for tid, _ in hits_m])
            scores = dict(hits_m)
            for item in items:
                item.score = scores.get(item.tile.id)
    return render(
        request,
        "search.html",
        {
            "run": run,
            "q": q,
            "mode": mode,
            "items": items,
            "snippets": snippets,
            "error": error,
            "notice": notice,
            "missing": _mark_missing(items),
        },
    )
