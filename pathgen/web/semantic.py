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
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import ConfigError
from pathgen.settings import ModelSettings
from pathgen.store.models import Run

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
    from pathgen.curation.dense import embedding_chunks
    from pathgen.select.search import top_matches

    q = np.asarray(query, dtype=np.float32).reshape(-1)
    return top_matches(q, embedding_chunks([str(f) for f in files], q.shape[0]), k)


async def search_by_meaning(
    engine: AsyncEngine, models: ClipModels, run: Run, query: str, k: int
) -> list[tuple[int, float]]:
    """``[(tile id, cosine similarity)]`` of the run's tiles closest to ``query``, best first.

    Raises :class:`StoreError` when the run has no embeddings of its model, and
    :class:`~pathgen.errors.ModelLoadError` when the model cannot be loaded.
    """
    from pathgen.curation.dense import search_run

    settings = run_model_settings(run)
    clip = await asyncio.to_thread(models.get, settings)
    return await search_run(engine, clip, run.id, text=query, top=k)
