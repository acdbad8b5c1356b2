"""Greedy near-duplicate filtering by cosine similarity (pure numpy).

Example::

    dup_of = greedy_dedupe(emb_in_priority_order, threshold=0.88)
    kept = dup_of < 0
"""

from __future__ import annotations

import numpy as np


def greedy_dedupe(emb: np.ndarray, threshold: float) -> np.ndarray:
    """Walk rows in order; drop a row whose cosine to any kept row is >= ``threshold``.

    ``emb`` holds unit-norm rows in priority order. Returns, per row, the position of the
    most similar kept row it duplicates, or -1 when the row is kept.
    """
    x = np.asarray(emb, dtype=np.float32)
    m = x.shape[0]
    dup_of = np.full(m, -1, dtype=np.int64)
    if m == 0:
        return dup_of
    kept = np.zeros(m, dtype=bool)
    block = 1024
    for start in range(0, m, block):
        stop = min(m, start + block)
        sims = x[start:stop] @ x[:stop].T  # (rows in block, rows up to block end)
        for r in range(start, stop):
            row = sims[r - start, :r]
            candidates = np.flatnonzero(kept[:r])
            if candidates.size:
                vals = row[candidates]
                j = int(np.argmax(vals))
                if vals[j] >= threshold:
                    dup_of[r] = candidates[j]
                    continue
            kept[r] = True
    return dup_of
