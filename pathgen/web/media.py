"""Images read from the slides on demand: tile thumbnails, tile neighbourhoods, slide
thumbnails, and the slide's Deep Zoom descriptor and tiles (see :mod:`pathgen.web.deepzoom`).

OpenSlide calls block, so they run in a worker thread. When a slide cannot be read
(moved, deleted, corrupt) a placeholder JPEG saying why is returned instead, with
``X-Pathgen-Placeholder`` set and no caching, so the pages still render.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response

from pathgen.errors import SlideError
from pathgen.store.engine import read_scope
from pathgen.store.models import Slide, Tile
from pathgen.web.deepzoom import DeepZoom, dz_tile_jpeg
from pathgen.web.images import (
    clamp_px,
    context_jpeg,
    placeholder_jpeg,
    slide_thumbnail_jpeg,
    tile_jpeg,
)
from pathgen.web.params import MAX_ROW_ID, RowId

router = APIRouter()
CACHE_CONTROL = "private, max-age=86400"


async def _tile_and_slide(request: Request, tile_id: int) -> tuple[Tile, Slide]:
    async with read_scope(request.app.state.engine) as session:
        tile = await session.get(Tile, tile_id)
        if tile is None:
            raise HTTPException(404, f"tile {tile_id} does not exist")
        slide = await session.get(Slide, tile.slide_id)
    assert slide is not None  # foreign key
    return tile, slide


async def _jpeg(render: Callable[[], bytes], out_px: int) -> Response:
    try:
        data = await asyncio.to_thread(render)
    except SlideError as exc:
        reason = "slide file missing" if exc.reason == "missing" else f"slide unreadable: {exc}"
        return Response(
            placeholder_jpeg(out_px, reason),
            media_type="image/jpeg",
            headers={"Cache-Control": "no-store", "X-Pathgen-Placeholder": exc.reason},
        )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": CACHE_CONTROL})


@router.get("/tiles/{tile_id}/image.jpg", name="tile_image")
async def tile_image(request: Request, tile_id: RowId, size: int | None = Query(None)) -> Response:
    """The tile as a ``size``-pixel square JPEG (default: the run's tile size)."""
    tile, slide = await _tile_and_slide(request, tile_id)
    out_px = clamp_px(size, tile.tile_px)
    cache = request.app.state.slides
    return await _jpeg(
        lambda: tile_jpeg(cache, slide.path, tile.x, tile.y, tile.size, out_px), out_px
    )


@router.get("/tiles/{tile_id}/context.jpg", name="tile_context")
async def tile_context(
    request: Request, tile_id: RowId, size: int | None = Query(None)
) -> Response:
    """The 3x3-tile neighbourhood around the tile, the tile outlined."""
    tile, slide = await _tile_and_slide(request, tile_id)
    out_px = clamp_px(size, 504)
    cache = request.app.state.slides
    return await _jpeg(
        lambda: context_jpeg(cache, slide.path, tile.x, tile.y, tile.size, out_px), out_px
    )


async def _slide(request: Request, slide_id: int) -> tuple[Slide, DeepZoom]:
    async with read_scope(request.app.state.engine) as session:
        slide = await session.get(Slide, slide_id)
    if slide is None:
        raise HTTPException(404, f"slide {slide_id} does not exist")
    if slide.width and slide.height:
        return slide, DeepZoom(slide.width, slide.height)
    try:
        reader = await asyncio.to_thread(request.app.state.slides.get, slide.path)
    except SlideError as exc:
        raise HTTPException(404, f"slide {slide_id} cannot be read: {exc}") from None
    return slide, DeepZoom(reader.width, reader.height)


@router.get("/slides/{slide_id}/slide.dzi", name="slide_dzi")
async def slide_dzi(request: Request, slide_id: RowId) -> Response:
    """The slide's Deep Zoom descriptor (OpenSeadragon reads tiles from ``slide_files/``)."""
    _, dz = await _slide(request, slide_id)
    return Response(dz.dzi_xml(), media_type="application/xml")


@router.get("/slides/{slide_id}/slide_files/{level}/{col}_{row}.jpeg", name="slide_dz_tile")
async def slide_dz_tile(
    request: Request,
    slide_id: RowId,
    level: Annotated[int, Path(ge=0, le=64)],
    col: Annotated[int, Path(ge=0, le=MAX_ROW_ID)],
    row: Annotated[int, Path(ge=0, le=MAX_ROW_ID)],
) -> Response:
    """One Deep Zoom tile, read from the slide through its reader."""
    slide, dz = await _slide(request, slide_id)
    if not dz.has_tile(level, col, row):
        raise HTTPException(404, f"slide {slide_id} has no Deep Zoom tile {level}/{col}_{row}")
    cache = request.app.state.slides
    return await _jpeg(lambda: dz_tile_jpeg(cache.get(slide.path), dz, level, col, row), dz.tile)


@router.get("/slides/{slide_id}/thumbnail.jpg", name="slide_thumbnail")
async def slide_thumbnail(
    request: Request, slide_id: RowId, size: int | None = Query(None)
) -> Response:
    """The whole slide, scaled to fit a ``size`` square."""
    async with read_scope(request.app.state.engine) as session:
        slide = await session.get(Slide, slide_id)
    if slide is None:
        raise HTTPException(404, f"slide {slide_id} does not exist")
    out_px = clamp_px(size, 512)
    cache = request.app.state.slides
    return await _jpeg(lambda: slide_thumbnail_jpeg(cache, slide.path, out_px), out_px)
