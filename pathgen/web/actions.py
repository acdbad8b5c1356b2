"""Curator actions (HTML form POSTs, CSRF-checked, then a redirect): accept, reject, edit."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import StoreError
from pathgen.store.captions import final_captions, human_edit, record_review
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, RunSlide, Tile
from pathgen.web.csrf import verify_csrf
from pathgen.web.params import RowId
from pathgen.web.render import MAX_REVIEWER, remember_reviewer, safe_next

router = APIRouter()
MAX_CAPTION_CHARS = 4000


def _reviewer(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise HTTPException(400, "enter your name in the reviewer field before reviewing")
    if len(name) > MAX_REVIEWER:
        raise HTTPException(400, f"reviewer name is longer than {MAX_REVIEWER} characters")
    return name


def _redirect(tile_id: int, run_id: str, reviewer: str, next_url: str | None) -> RedirectResponse:
    target = safe_next(next_url, f"/tiles/{tile_id}?run={quote(run_id, safe='')}")
    response = RedirectResponse(target, status_code=303)
    remember_reviewer(response, reviewer)
    return response


async def _check(session: AsyncSession, tile_id: int, run_id: str) -> None:
    tile = await session.get(Tile, tile_id)
    if tile is None:
        raise HTTPException(404, f"tile {tile_id} does not exist")
    if await session.get(Run, run_id) is None:
        raise HTTPException(404, f"run {run_id!r} does not exist")
    if await session.get(RunSlide, (run_id, tile.slide_id)) is None:
        raise HTTPException(404, f"tile {tile_id} is not part of run {run_id!r}")


@router.post("/tiles/{tile_id}/review", name="review")
async def review(
    request: Request,
    tile_id: RowId,
    run_id: str = Form(...),
    decision: str = Form(...),
    reviewer: str = Form(""),
    next: str | None = Form(None),  # noqa: A002 - the form field's name
) -> RedirectResponse:
    """Accept or reject the tile's current final caption."""
    await verify_csrf(request)
    if decision not in ("accept", "reject"):
        raise HTTPException(400, f"decision must be accept or reject, not {decision!r}")
    name = _reviewer(reviewer)
    async with session_scope(request.app.state.engine) as session:
        await _check(session, tile_id, run_id)
        final = (await final_captions(session, run_id, [tile_id])).get(tile_id)
        if final is None:
            raise HTTPException(409, f"tile {tile_id} has no final caption in run {run_id!r}")
        await record_review(
            session,
            run_id=run_id,
            tile_id=tile_id,
            decision=decision,
            reviewer=name,
            revision_id=final.revision_id,
        )
    return _redirect(tile_id, run_id, name, next)


@router.post("/tiles/{tile_id}/edit", name="edit")
async def edit(
    request: Request,
    tile_id: RowId,
    run_id: str = Form(...),
    text: str = Form(""),
    reviewer: str = Form(""),
    next: str | None = Form(None),  # noqa: A002 - the form field's name
) -> RedirectResponse:
    """Store the curator's corrected caption as a new ``human`` revision."""
    await verify_csrf(request)
    name = _reviewer(reviewer)
    if len(text) > MAX_CAPTION_CHARS:
        raise HTTPException(400, f"caption is longer than {MAX_CAPTION_CHARS} characters")
    async with session_scope(request.app.state.engine) as session:
        await _check(session, tile_id, run_id)
        final = (await final_captions(session, run_id, [tile_id])).get(tile_id)
        if final is not None and final.text == text.strip():
            raise HTTPException(400, "the caption is unchanged: use Accept to approve it as is")
        try:
            await human_edit(session, run_id=run_id, tile_id=tile_id, text=text, reviewer=name)
        except StoreError as exc:
            raise HTTPException(400, str(exc)) from None
    return _redirect(tile_id, run_id, name, next)
