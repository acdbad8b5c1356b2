"""Dense retrieval and zero-shot classification over a run's stored tile embeddings.

Everything streams through the per-slide embedding files one slide at a time, so memory
stays bounded however large the run is.

Example::

    clip = load_clip(run_settings.model)
    hits = await search_run(engine, clip, "run-1", text="tumour cells infiltrating stroma")
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import StoreError
from pathgen.store.engine import read_scope
from pathgen.store.models import Embedding, RunSlide, Tile


async def run_embedding_files(engine: AsyncEngine, run_id: str, fingerprint: str) -> list[str]:
    """The run's per-slide embedding files computed with the model ``fingerprint``."""
    async with read_scope(engine) as session:
        rows = (
            await session.execute(
                select(Embedding.path, Embedding.model_fingerprint)
                .join(RunSlide, RunSlide.slide_id == Embedding.slide_id)
                .where(RunSlide.run_id == run_id)
                .order_by(Embedding.slide_id)
            )
        ).all()
    if not rows:
        raise StoreError(f"run {run_id!r} has no stored tile embeddings: run its embed stage first")
    paths = [path for path, fp in rows if fp == fingerprint]
    if not paths:
        found = ", ".join(sorted({fp for _, fp in rows}))
        raise StoreError(
            f"run {run_id!r} has embeddings of {found}, none of its model {fingerprint}; "
            "re-run the embed stage with the run's model"
        )
    return paths


def embedding_chunks(paths: Sequence[str], dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(tile_ids, emb float32)`` per file, checking the embedding width."""
    from pathgen.embed import load_embeddings

    for path in paths:
        ids, emb, _ = load_embeddings(path)
        if len(ids) and emb.shape[1] != dim:
            raise StoreError(
                f"{path}: embeddings have dimension {emb.shape[1]}, the model {dim}; "
                "re-run the embed stage with the run's model"
            )
        yield ids, emb.astype(np.float32)


async def tile_vector(engine: AsyncEngine, paths: Sequence[str], tile_id: int) -> np.ndarray:
    """A tile's stored embedding (for "more like this")."""
    async with read_scope(engine) as session:
        tile = await session.get(Tile, tile_id)
    if tile is None:
        raise StoreError(f"tile {tile_id} does not exist")

    def find() -> np.ndarray | None:
        from pathgen.embed import load_embeddings

        for path in paths:
            ids, emb, _ = load_embeddings(path)
            hit = np.flatnonzero(ids == tile_id)
            if hit.size:
                return emb[hit[0]].astype(np.float32)
        return None

    vec = await asyncio.to_thread(find)
    if vec is None:
        raise StoreError(f"tile {tile_id} has no embedding in this run")
    return vec


async def search_run(
    engine: AsyncEngine,
    clip: Any,
    run_id: str,
    *,
    text: str | None = None,
    like_tile: int | None = None,
    top: int = 50,
) -> list[tuple[int, float]]:
    """Exact top-``top`` tiles of the run by cosine similarity to a text or to a tile."""
    from pathgen.select.search import search_by_vector

    if (text is None) == (like_tile is None):
        raise ValueError("give exactly one of text or like_tile")
    paths = await run_embedding_files(engine, run_id, clip.fingerprint)
    if text is not None:
        vec = (await asyncio.to_thread(clip.encode_texts, [text]))[0]
    else:
        vec = await tile_vector(engine, paths, int(like_tile))  # type: ignore[arg-type]
    want = top + (like_tile is not None)  # the tile itself is its own best match
    hits = await asyncio.to_thread(search_by_vector, vec, embedding_chunks(paths, len(vec)), want)
    return [h for h in hits if h[0] != like_tile][:top]


async def zeroshot_run(
    engine: AsyncEngine, clip: Any, run_id: str, class_emb: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(tile_id, predicted class index, probabilities)`` for every embedded tile of the run."""
    from pathgen.embed import classify

    paths = await run_embedding_files(engine, run_id, clip.fingerprint)

    def run() -> list[tuple[int, int, np.ndarray]]:
        out: list[tuple[int, int, np.ndarray]] = []
        for ids, emb in embedding_chunks(paths, class_emb.shape[1]):
            pred, probs = classify(emb, class_emb)
            out.extend(zip(ids.tolist(), pred.tolist(), probs, strict=True))
        return out

    return iter(await asyncio.to_thread(run))
