"""The ``embed`` stage: CLIP embeddings of every tile of a slide, saved once per model."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import SlideError
from pathgen.runs.handlers.tile import tiles_of_slide
from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.resources import Resources
from pathgen.store.engine import session_scope
from pathgen.store.models import Embedding, Slide, utcnow

log = logging.getLogger("pathgen.embed")


async def handle_embed(item: Claimed, res: Resources) -> Completion:
    from pathgen.embed import embed_tiles, embedding_path, save_embeddings
    from pathgen.slides import read_tile

    slide_id = int(item.key)
    clip = await res.clip()
    tiling = res.settings.tiling
    async with session_scope(res.engine) as session:
        slide = await session.get(Slide, slide_id)
        tiles = await tiles_of_slide(session, slide_id, tiling.mpp, tiling.tile_size)
        existing = (
            await session.scalars(
                select(Embedding).where(
                    Embedding.slide_id == slide_id,
                    Embedding.model_fingerprint == clip.fingerprint,
                )
            )
        ).first()
    follow = [NewWork("select", item.key)]
    if existing is not None and Path(existing.path).is_file() and existing.count > 0:
        # a re-selection (``reselect`` in the payload) selects again from these embeddings
        reselect = bool(item.payload.get("reselect"))
        return Completion(item, follow_up=follow, result={"skipped": True}, new_output=reselect)
    if not tiles:
        raise SlideError(str(slide_id), "no_tiles", "slide has no tiles at this resolution")

    reader = res.slides.get(slide.path)

    def read(tile):  # noqa: ANN001, ANN202 - a Tile row
        return read_tile(reader, tile.x, tile.y, tile.size, tile.tile_px)

    emb = await asyncio.to_thread(
        embed_tiles,
        clip,
        tiles,
        read,
        res.settings.model.batch_size,
        res.settings.model.reader_threads,
    )
    if not emb.ok.any():
        raise SlideError(slide.path, "corrupt", "no tile of the slide could be read for embedding")
    ids = [t.id for t in emb.select(tiles)]
    path = embedding_path(res.data_dir, clip.fingerprint, f"slide-{slide_id}")
    await asyncio.to_thread(save_embeddings, path, ids, emb.embeddings, clip.fingerprint)
    if emb.failed:
        log.warning("%s: %d tile(s) could not be read for embedding", slide.path, len(emb.failed))

    async def persist(session: AsyncSession) -> None:
        row = (
            await session.scalars(
                select(Embedding).where(
                    Embedding.slide_id == slide_id,
                    Embedding.model_fingerprint == clip.fingerprint,
                )
            )
        ).first()
        if row is None:
            row = Embedding(slide_id=slide_id, model_fingerprint=clip.fingerprint)
            session.add(row)
        row.path, row.count, row.dim = str(path), len(ids), int(emb.embeddings.shape[1])
        row.created_at = utcnow()

    return Completion(
        item,
        persist=persist,
        follow_up=follow,
        result={"tiles": len(ids), "failed_reads": len(emb.failed)},
    )
