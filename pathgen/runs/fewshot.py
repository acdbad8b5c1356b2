"""Few-shot describe by retrieval: captions of the most similar reviewed tiles as examples.

The pool holds every tile a curator accepted or edited (in any run), with its final
caption and CLIP embedding (from the per-slide embedding files), plus reference images
from a CSV (``image``, ``text``). It is rebuilt at most once a minute, so reviews made
during a run feed the rest of the run.
"""

from __future__ import annotations

import asyncio
import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from pathgen.errors import ConfigError
from pathgen.store.captions import final_captions
from pathgen.store.engine import session_scope
from pathgen.store.models import Embedding, Review, Tile

REFRESH_S = 60.0


@dataclass(frozen=True)
class Example:
    source: str  # "reviewed:<tile id>" or "reference:<image path>"
    text: str
    score: float


class FewShotIndex:
    def __init__(self, resources: Any) -> None:
        self.res = resources
        self._texts: list[tuple[str, str]] = []
        self._emb: np.ndarray | None = None
        self._built_at = -REFRESH_S
        self._lock = asyncio.Lock()
        self._slide_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    async def _slide_embeddings(self, slide_id: int, fingerprint: str):  # noqa: ANN202
        from pathgen.embed import load_embeddings

        if slide_id not in self._slide_cache:
            async with session_scope(self.res.engine) as s:
                row = (
                    await s.scalars(
                        select(Embedding).where(
                            Embedding.slide_id == slide_id,
                            Embedding.model_fingerprint == fingerprint,
                        )
                    )
                ).first()
            if row is None:
                return None
            ids, emb, _ = await asyncio.to_thread(load_embeddings, row.path)
            if len(self._slide_cache) > 64:
                self._slide_cache.clear()
            self._slide_cache[slide_id] = (ids, emb.astype(np.float32))
        return self._slide_cache[slide_id]

    async def tile_embedding(self, tile: Tile) -> np.ndarray | None:
        clip = await self.res.clip()
        found = await self._slide_embeddings(tile.slide_id, clip.fingerprint)
        if found is None:
            return None
        ids, emb = found
        hit = np.flatnonzero(ids == tile.id)
        return emb[hit[0]] if hit.size else None

    async def _rebuild(self) -> None:
        clip = await self.res.clip()
        texts: list[tuple[str, str]] = []
        vectors: list[np.ndarray] = []
        async with session_scope(self.res.engine) as s:
            latest = select(func.max(Review.id)).group_by(Review.run_id, Review.tile_id)
            newest = select(Review.run_id, Review.tile_id, Review.decision).where(
                Review.id.in_(latest.scalar_subquery())
            )
            reviewed = [(r, t) for r, t, d in await s.execute(newest) if d in ("accept", "edit")]
            by_run: dict[str, list[int]] = {}
            for run_id, tile_id in reviewed:
                by_run.setdefault(run_id, []).append(tile_id)
            captions: dict[int, str] = {}
            for run_id, tile_ids in by_run.items():
                for tile_id, final in (await final_captions(s, run_id, tile_ids)).items():
                    captions[tile_id] = final.text
            tiles = list(await s.scalars(select(Tile).where(Tile.id.in_(list(captions)))))
        for tile in tiles:
            vec = await self.tile_embedding(tile)
            if vec is not None:
                texts.append((f"reviewed:{tile.id}", captions[tile.id]))
                vectors.append(vec)
        refs = self.res.settings.captioning.few_shot_references
        if refs:
            ref_texts, ref_emb = await asyncio.to_thread(_reference_embeddings, clip, Path(refs))
            texts += ref_texts
            vectors += list(ref_emb)
        self._texts = texts
        self._emb = np.stack(vectors).astype(np.float32) if vectors else None
        self._built_at = time.monotonic()

    async def examples(self, tile: Tile, k: int) -> list[Example]:
        async with self._lock:
            if time.monotonic() - self._built_at >= REFRESH_S:
                await self._rebuild()
        if self._emb is None or k <= 0:
            return []
        query = await self.tile_embedding(tile)
        if query is None:
            return []
        scores = self._emb @ query
        order = np.argsort(-scores, kind="stable")
        out: list[Example] = []
        for i in order:
            source, text = self._texts[i]
            if source == f"reviewed:{tile.id}":
                continue
            out.append(Example(source, text, float(scores[i])))
            if len(out) == k:
                break
        return out


def _reference_embeddings(clip: Any, path: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    from PIL import Image

    if not path.is_file():
        raise ConfigError("file not found", path=str(path), key="captioning.few_shot_references")
    rows: list[tuple[str, str]] = []
    images = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not {"image", "text"} <= set(reader.fieldnames or []):
            raise ConfigError(
                "needs columns 'image' and 'text'",
                path=str(path),
                key="captioning.few_shot_references",
            )
        for line, row in enumerate(reader, start=2):
            image = (path.parent / row["image"]).resolve()
            try:
                with Image.open(image) as img:
                    images.append(img.convert("RGB"))
            except OSError as exc:
                raise ConfigError(
                    f"line {line}: cannot read image {image}: {exc}", path=str(path), key="image"
                ) from None
            rows.append((f"reference:{image}", row["text"].strip()))
    if not images:
        return [], np.zeros((0, 1), dtype=np.float32)
    return rows, np.asarray(clip.encode_images(images), dtype=np.float32)
