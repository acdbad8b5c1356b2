"""Curator actions (HTML form POSTs, CSRF-checked, then a redirect): accept, reject, edit.

Every form carries the revision id the curator was shown (``revision_id``). When the
tile's final caption has changed since, nothing is written and the answer is 409 with
the newer text, who wrote it, and forms to review that one instead (see
:func:`pathgen.store.curation_index.claim_revision`). Reviews and human revisions are
recorded under the logged-in account (see :mod:`pathgen.web.auth`).

A blind second review of the double-review sample (``second=1``, see
:mod:`pathgen.curation.samples`) judges the revision the first curator judged, not the
final caption: the form must carry that revision, and the tile must still wait for this
reviewer's second review (else 409, saying nothing of the first review).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.curation.samples import blind_revision
from pathgen.errors import StoreError
from pathgen.store.captions import final_captions, human_edit, record_review
from pathgen.store.curation_index import claim_revision, lock_tile
from pathgen.store.engine import read_scope, session_scope
from pathgen.store.models import CaptionRevision, Run, RunSlide, Tile
from pathgen.web.auth import require
from pathgen.web.csrf import verify_csrf
from pathgen.web.params import MAX_ROW_ID, RowId
from pathgen.web.render import render, safe_next

router = APIRouter()
MAX_CAPTION_CHARS = 4000


class Stale(Exception):
    """The revision shown is no longer the tile's final one."""


def _redirect(tile_id: int, run_id: str, next_url: str | None) -> RedirectResponse:
    target = safe_next(next_url, f"/tiles/{tile_id}?run={quote(run_id, safe='')}")
    return RedirectResponse(target, status_code=303)


async def _check(session: AsyncSession, tile_id: int, run_id: str) -> None:
    tile = await session.get(Tile, tile_id)
    if tile is None:
        raise HTTPException(404, f"tile {tile_id} does not exist")
    if await session.get(Run, run_id) is None:
        raise HTTPException(404, f"run {run_id!r} does not exist")
    if await session.get(RunSlide, (run_id, tile.slide_id)) is None:
        raise HTTPException(404, f"tile {tile_id} is not part of run {run_id!r}")


async def _claim(session: AsyncSession, tile_id: int, run_id: str, shown: int) -> None:
    await _check(session, tile_id, run_id)
    if not await claim_revision(session, run_id, tile_id, shown):
        raise Stale


async def _claim_second(
    session: AsyncSession, tile_id: int, run_id: str, shown: int, reviewer: str
) -> None:
    """A blind second review: ``shown`` must be the revision the first curator judged."""
    await _check(session, tile_id, run_id)
    await lock_tile(session, run_id, tile_id)  # a concurrent second review waits, then sees ours
    if await blind_revision(session, run_id, tile_id, reviewer) != shown:
        raise HTTPException(
            409,
            f"tile {tile_id} is not waiting for your second review of revision #{shown} "
            "(reviewed twice already, or by you): take the next with Second review next",
        )


async def _conflict(
    request: Request, tile_id: int, run_id: str, shown: int, mine: str | None
) -> HTMLResponse:
    async with read_scope(request.app.state.engine) as session:
        final = (await final_captions(session, run_id, [tile_id])).get(tile_id)
        current = await session.get(CaptionRevision, final.revision_id) if final else None
    return render(
        request,
        "conflict.html",
        {
            "tile_id": tile_id,
            "run_id": run_id,
            "shown": shown,
            "current": current,
            "mine": mine,
            "next_url": f"/tiles/{tile_id}?run={quote(run_id, safe='')}",
        },
        status_code=409,
    )


@router.post("/tiles/{tile_id}/review", name="review", response_model=None)
async def review(
    request: Request,
    tile_id: RowId,
    run_id: str = Form(..., max_length=64),
    decision: str = Form(...),
    revision_id: int = Form(..., ge=1, le=MAX_ROW_ID),
    next: str | None = Form(None),  # noqa: A002 - the form field's name
    second: bool = Form(False),
) -> RedirectResponse | HTMLResponse:
    """Accept or reject the revision the curator was shown, if it is still the final one
    (``second``: the revision a blind second review judges)."""
    await verify_csrf(request)
    user = require(request, "reviewer" if second else "curator")
    if decision not in ("accept", "reject"):
        raise HTTPException(400, f"decision must be accept or reject, not {decision!r}")
    try:
        async with session_scope(request.app.state.engine) as session:
            if second:
                await _claim_second(session, tile_id, run_id, revision_id, user.name)
            else:
                await _claim(session, tile_id, run_id, revision_id)
            await record_review(
                session,
                run_id=run_id,
                tile_id=tile_id,
                decision=decision,
                reviewer=user.name,
                revision_id=revision_id,
            )
    except Stale:
        return await _conflict(request, tile_id, run_id, revision_id, None)
    return _redirect(tile_id, run_id, next)


@router.post("/tiles/{tile_id}/edit", name="edit", response_model=None)
async def edit(
    request: Request,
    tile_id: RowId,
    run_id: str = Form(..., max_length=64),
    text: str = Form(""),
    revision_id: int = Form(..., ge=1, le=MAX_ROW_ID),
    next: str | None = Form(None),  # noqa: A002 - the form field's name
    second: bool = Form(False),
) -> RedirectResponse | HTMLResponse:
    """Store the curator's correction of the revision they were shown as a ``human`` one
    (``second``: a blind second review's correction of the revision the first judged)."""
    await verify_csrf(request)
    user = require(request, "reviewer" if second else "curator")
    if len(text) > MAX_CAPTION_CHARS:
        raise HTTPException(400, f"caption is longer than {MAX_CAPTION_CHARS} characters")
    try:
        async with session_scope(request.app.state.engine) as session:
            if second:
                await _claim_second(session, tile_id, run_id, revision_id, user.name)
                shown = await session.get(CaptionRevision, revision_id)
                before = shown.text if shown else None
            else:
                await _claim(session, tile_id, run_id, revision_id)
                final = (await final_captions(session, run_id, [tile_id])).get(tile_id)
                before = final.text if final else None
            if before == text.strip():
                raise HTTPException(400, "the caption is unchanged: use Accept to approve it as is")
            try:
                await human_edit(
                    session,
                    run_id=run_id,
                    tile_id=tile_id,
                    text=text,
                    reviewer=user.name,
                    parent_id=revision_id if second else None,
                )
            except StoreError as exc:
                raise HTTPException(400, str(exc)) from None
    except Stale:
        return await _conflict(request, tile_id, run_id, revision_id, text)
    return _redirect(tile_id, run_id, next)
