"""Pure similarity-matrix metrics: retrieval recall@k and near-duplicate rates.

Example::

    recall_at_k(sim, targets=[0, 1, 2], ks=(1, 5))   # {1: ..., 5: ...}
    near_duplicate_rate(text_emb, threshold=0.95)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pathgen.eval.text_metrics import normalise

#: Cosine similarity at or above which two captions count as near-duplicates.
NEAR_DUPLICATE_COSINE = 0.95


def target_ranks(sim: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """1-based rank of each query's target item: 1 + items scored strictly higher.

    ``sim`` is ``(queries, items)``; ties with the target do not push it down.
    """
    sim = np.asarray(sim, dtype=np.float64)
    idx = np.asarray(targets, dtype=np.int64)
    if sim.ndim != 2 or sim.shape[0] != idx.shape[0]:
        raise ValueError(f"need one target per query row: sim {sim.shape}, {idx.shape[0]} targets")
    own = sim[np.arange(sim.shape[0]), idx]
    return 1 + (sim > own[:, None]).sum(axis=1)


def recall_at_k(
    sim: np.ndarray, targets: Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float | None]:
    """Share of queries whose target is among the top ``k`` items, for each ``k``."""
    if len(targets) == 0:
        return {k: None for k in ks}
    ranks = target_ranks(sim, targets)
    return {k: float((ranks <= k).mean()) for k in ks}


def near_duplicate_flags(emb: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE) -> np.ndarray:
    """Per row of unit-norm ``emb``: whether another row has cosine >= ``threshold`` with it."""
    emb = np.asarray(emb, dtype=np.float32)
    n = emb.shape[0]
    if n < 2:
        return np.zeros(n, dtype=bool)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return sim.max(axis=1) >= threshold


def near_duplicate_rate(emb: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE) -> float | None:
    """Share of rows of ``emb`` that have a near-duplicate (None for no rows)."""
    flags = near_duplicate_flags(emb, threshold)
    return float(flags.mean()) if flags.size else None


def exact_duplicate_rate(texts: Sequence[str]) -> float | None:
    """Share of texts whose normalised form (lowercase, no punctuation) another text shares."""
    if not texts:
        return None
    keys = [normalise(t) for t in texts]
    counts = Counter(keys)
    return sum(1 for k in keys if counts[k] > 1) / len(keys)
