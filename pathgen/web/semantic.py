"""Search a run's tiles by meaning: the query's CLIP text embedding against stored tile embeddings.

The run's own model (``runs.config["model"]``, the settings snapshot taken when the run
started) embeds the query; the per-slide embedding files of that model (table
``embeddings``) are streamed one slide at a time, keeping only a running top-k, so
memory stays bounded by one slide's embeddings.

Example::

    hits = await search_by_meaning(engine, models, run, "tumour cells in stroma", k=48)
"""

from __future__ import annotations

import asyncio
import heapq
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.embed.files import load_embeddings
from pathgen.errors import ConfigError, StoreError
from pathgen.settings import ModelSettings
from pathgen.store.engine import session_scope
from pathgen.store.models import Embedding, Run, RunSlide

if TYPE_CHECKING:
    from pathgen.embed.model import ClipModel


class ClipModels:
    """CLIP models loaded on first use, one per distinct model settings (thread-safe)."""

    def __init__(self) -> None:
        self._models: dict[str, ClipModel] = {}
        self._lock = threading.Lock()

    def get(self, settings: ModelSettings) -> ClipModel:
        from pathgen.embed.model import load_clip

        key = settings.model_dump_json()
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = load_clip(settings)
                self._models[key] = model
            return model


def run_model_settings(run: Run) -> ModelSettings:
    """The model section of the run's settings snapshot (defaults when it has none)."""
    section: Any = (run.config or {}).get("model") or {}
    try:
        return ModelSettings.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(
            f"the model settings stored with run {run.id!r} are invalid: {exc.errors()[0]['msg']}",
            key="runs.config.model",
        ) from None


def top_k(query: np.ndarray, files: Iterable[str | Path], k: int) -> list[tuple[int, float]]:
    """The ``k`` tiles most similar to ``query`` over the embedding files, best first."""
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    heap: list[tuple[float, int]] = []  # min-heap of (score, tile id), size <= k
    if k <= 0:
        return []
    for file in files:
        ids, emb, _ = load_embeddings(file)
        if len(ids) == 0:
            continue
        if emb.shape[1] != q.shape[0]:
            raise StoreError(
                f"{file}: embeddings have dimension {emb.shape[1]}, the query {q.shape[0]}; "
                "re-run the embed stage with the run's model"
            )
        scores = emb.astype(np.float32) @ q
        take = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
        for i in take:
            item = (float(scores[i]), int(ids[i]))
            if len(heap) < k:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    return [(tid, score) for score, tid in sorted(heap, reverse=True)]


async def search_by_meaning(
    engine: AsyncEngine, models: ClipModels, run: Run, query: str, k: int
) -> list[tuple[int, float]]:
    """``[(tile id, cosine similarity)]`` of the run's tiles closest to ``query``, best first.

    Raises :class:`StoreError` when the run has no embeddings of its model, and
    :class:`~pathgen.errors.ModelLoadError` when the model cannot be loaded.
    """
    async with session_scope(engine) as session:
        rows = (
            await session.execute(
                select(Embedding.path, Embedding.model_fingerprint)
                .join(RunSlide, RunSlide.slide_id == Embedding.slide_id)
                .where(RunSlide.run_id == run.id)
                .order_by(Embedding.slide_id)
            )
        ).all()
    if not rows:
        raise StoreError(f"run {run.id!r} has no stored tile embeddings: run its embed stage first")
    settings = run_model_settings(run)
    clip = await asyncio.to_thread(models.get, settings)
    paths = [path for path, fingerprint in rows if fingerprint == clip.fingerprint]
    if not paths:
        found = ", ".join(sorted({fp for _, fp in rows}))
        raise StoreError(
            f"run {run.id!r} has embeddings of {found}, none of its model {clip.fingerprint}; "
            "re-run the embed stage with the run's model"
        )
    vec = (await asyncio.to_thread(clip.encode_texts, [query]))[0]
    return await asyncio.to_thread(top_k, vec, paths, k)
