"""Curating a tile's instruct items: list them, accept / reject one, or save an edit.

``GET /tiles/{tile}/instruct?run=RUN`` lists the run's current items of the tile with
their source revision, provenance, verification and newest review; the forms POST to
``/instruct/{item}/review`` and ``/instruct/{item}/edit`` (CSRF-checked, then a redirect
back). An edit is stored as a new item replacing its parent (the store is append-only).
The reviewer is the logged-in account (curator role or above); acting on an item that
another curator's edit has replaced since the page was loaded answers 409.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from pathgen.errors import StoreError
from pathgen.store.engine import read_scope, session_scope
from pathgen.store.instruct import current_items, edit_item, latest_item_reviews, review_item
from pathgen.store.models import InstructItem, Tile
from pathgen.web.auth import require
from pathgen.web.csrf import verify_csrf
from pathgen.web.params import RowId
from pathgen.web.render import render

router = APIRouter()
MAX_TEXT = 4000


def _page(tile_id: int, run_id: str) -> str:
    return f"/tiles/{tile_id}/instruct?run={quote(run_id, safe='')}"


@router.get("/tiles/{tile_id}/instruct", response_class=HTMLResponse, name="instruct")
async def instruct_page(request: Request, tile_id: RowId, run: str = Query(...)) -> HTMLResponse:
    async with read_scope(request.app.state.engine) as session:
        if await session.get(Tile, tile_id) is None:
            raise HTTPException(404, f"tile {tile_id} does not exist")
        items = await current_items(session, run, [tile_id])
        reviews = await latest_item_reviews(session, run, [i.id for i in items])
    return render(
        request,
        "instruct.html",
        {"tile_id": tile_id, "run_id": run, "items": items, "reviews": reviews},
    )


async def _item(session, item_id: int) -> InstructItem:  # noqa: ANN001 - an AsyncSession
    """The item, if it is still current (no edit has replaced it)."""
    item = await session.get(InstructItem, item_id)
    if item is None:
        raise HTTPException(404, f"instruct item {item_id} does not exist")
    newer = await session.scalar(
        select(InstructItem).where(InstructItem.parent_id == item_id).limit(1)
    )
    if newer is not None:
        raise HTTPException(
            409,
            f"item #{item_id} was replaced by #{newer.id} (edited by {newer.created_by or '?'})"
            " since this page was loaded: reload it and review the newer item",
        )
    return item


@router.post("/instruct/{item_id}/review", name="instruct_review")
async def review(request: Request, item_id: RowId, decision: str = Form(...)) -> RedirectResponse:
    """Accept or reject one item."""
    await verify_csrf(request)
    name = require(request, "curator").name
    if decision not in ("accept", "reject"):
        raise HTTPException(400, f"decision must be accept or reject, not {decision!r}")
    async with session_scope(request.app.state.engine) as session:
        item = await _item(session, item_id)
        await review_item(session, item_id=item_id, decision=decision, reviewer=name)
        target = _page(item.tile_id, item.run_id)
    return RedirectResponse(target, status_code=303)


@router.post("/instruct/{item_id}/edit", name="instruct_edit")
async def edit(request: Request, item_id: RowId) -> RedirectResponse:
    """Save the corrected questions and answers (fields ``question_N``/``answer_N``)."""
    await verify_csrf(request)
    name = require(request, "curator").name
    form = await request.form()
    async with session_scope(request.app.state.engine) as session:
        item = await _item(session, item_id)
        turns = []
        for n, old in enumerate(item.turns):
            question = str(form.get(f"question_{n}", old["question"])).strip()
            answer = str(form.get(f"answer_{n}", old["answer"])).strip()
            if len(question) > MAX_TEXT or len(answer) > MAX_TEXT:
                raise HTTPException(
                    400, f"a question or answer is longer than {MAX_TEXT} characters"
                )
            turns.append({**old, "question": question, "answer": answer})
        if turns == item.turns:
            raise HTTPException(400, "nothing changed: use Accept to approve the item as is")
        try:
            await edit_item(session, item_id=item_id, turns=turns, reviewer=name)
        except StoreError as exc:
            raise HTTPException(400, str(exc)) from None
        target = _page(item.tile_id, item.run_id)
    return RedirectResponse(target, status_code=303)
