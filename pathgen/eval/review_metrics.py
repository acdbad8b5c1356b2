"""Pure summaries of curator reviews and of numeric distributions.

Example::

    review_rates(["accept", "reject", "accept"])  # accept 2/3, reject 1/3, edit 0
    describe([0.2, 0.4])                          # n, mean, std, min, quartiles, max
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pathgen.eval.records import RunData
from pathgen.eval.text_metrics import normalised_levenshtein

DECISIONS = ("accept", "reject", "edit")


def review_rates(decisions: Sequence[str]) -> dict[str, float | int | None]:
    """Accept / reject / edit shares over reviewed tiles (one latest decision per tile)."""
    n = len(decisions)
    unknown = sorted({d for d in decisions if d not in DECISIONS})
    if unknown:
        raise ValueError(f"unknown review decisions {unknown}: expected one of {DECISIONS}")
    out: dict[str, float | int | None] = {"reviewed": n}
    for decision in DECISIONS:
        count = sum(1 for d in decisions if d == decision)
        out[f"{decision}_count"] = count
        out[f"{decision}_rate"] = count / n if n else None
    return out


def edit_distances(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Normalised word-level Levenshtein distance of each ``(before, after)`` pair."""
    return [normalised_levenshtein(before, after) for before, after in pairs]


def describe(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, standard deviation, min, quartiles and max (None values when empty)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        keys = ("mean", "std", "min", "p25", "median", "p75", "max")
        return {"n": 0, **{k: None for k in keys}}
    p25, median, p75 = np.percentile(arr, [25, 50, 75])
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "p25": float(p25),
        "median": float(median),
        "p75": float(p75),
        "max": float(arr.max()),
    }


def review_summary(data: RunData) -> dict[str, Any]:
    """Review decision rates (newest per tile) and human-edit distances to the edited caption."""
    by_id = {r.id: r for r in data.revisions}
    pairs = [
        (by_id[r.parent_id].text, r.text)
        for r in data.revisions
        if r.stage == "human" and r.status == "ok" and r.parent_id in by_id
    ]
    rates = review_rates([r.decision for r in data.reviews])
    distances = edit_distances(pairs)
    return {
        **rates,
        "captioned_tiles": len(data.final_revision_ids),
        "human_edits": len(pairs),
        "edit_distance": describe(distances),
        "distributions": {"edit_distance": distances},
    }
