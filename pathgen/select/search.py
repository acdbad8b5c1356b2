"""Exact dense retrieval over stored embeddings, streamed one slide file at a time.

Memory stays bounded by one chunk plus a running top list: each chunk's best rows are
merged with the best so far.

Example::

    chunks = (load_embeddings(p)[:2] for p in embedding_files)
    hits = top_matches(clip.encode_texts(["tumour necrosis"])[0], chunks, top=20)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np


class TextEncoder(Protocol):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def top_matches(
    query: np.ndarray,
    chunks: Iterable[tuple[Sequence[int] | np.ndarray, np.ndarray]],
    top: int,
) -> list[tuple[int, float]]:
    """The ``top`` (tile_id, cosine) pairs over all chunks, best first.

    ``query`` is a unit-norm vector (D,); each chunk is ``(tile_ids, emb (n, D))``.
    Equal scores keep the order in which tiles were streamed.
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    best_ids = np.zeros(0, dtype=np.int64)
    best_scores = np.zeros(0, dtype=np.float32)
    if top <= 0:
        return []
    for tile_ids, emb in chunks:
        ids = np.asarray(tile_ids, dtype=np.int64)
        if ids.size == 0:
            continue
        scores = np.asarray(emb, dtype=np.float32) @ q
        if scores.size > top:
            part = np.argpartition(-scores, top - 1)[:top]
            part.sort()  # keep stream order among candidates
            ids, scores = ids[part], scores[part]
        all_ids = np.concatenate([best_ids, ids])
        all_scores = np.concatenate([best_scores, scores])
        order = np.lexsort((np.arange(all_scores.size), -all_scores.astype(np.float64)))[:top]
        best_ids, best_scores = all_ids[order], all_scores[order]
    return [(int(i), float(s)) for i, s in zip(best_ids, best_scores, strict=True)]


def search_by_vector(
    vector: np.ndarray,
    chunks: Iterable[tuple[Sequence[int] | np.ndarray, np.ndarray]],
    top: int = 20,
) -> list[tuple[int, float]]:
    """Tiles most similar to an embedding (e.g. a tile's own, for "more like this")."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    return top_matches(v / max(float(np.linalg.norm(v)), 1e-12), chunks, top)


def search_by_text(
    clip: TextEncoder,
    text: str,
    chunks: Iterable[tuple[Sequence[int] | np.ndarray, np.ndarray]],
    top: int = 20,
) -> list[tuple[int, float]]:
    """Tiles whose embeddings best match ``text`` under the CLIP text encoder."""
    return top_matches(clip.encode_texts([text])[0], chunks, top)
