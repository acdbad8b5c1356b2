"""Choose the tiles of one slide worth captioning (pure: arrays in, decisions out).

Three sources nominate tiles, in this priority order:

1. ``attribute``: the ``top_k`` tiles by attribute score, the highest cosine similarity
   to any library (or LLM) prompt; the winning prompt is recorded.
2. ``report``: the ``top_k`` tiles by report score, the *sum* of similarities to the
   slide's report prompts.
3. ``cluster``: up to ``max_diverse`` tiles spread over k-means clusters of the slide's
   embeddings, round-robin over clusters, nearest-to-centre first.

The union is then filtered greedily in priority order: a tile whose cosine similarity to
an already kept tile is at least ``duplicate_threshold`` is dropped as its duplicate.
Ties are broken by tile order, so a seed gives one result.

Example::

    result = select_tiles(tile_ids, emb, settings.selection,
                          prompt_ids=[p.id for p in prompts], prompt_emb=text_emb)
    kept = [d.tile_id for d in result.decisions if d.kept]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pathgen.select.dedupe import greedy_dedupe
from pathgen.select.kmeans import default_k, kmeans
from pathgen.settings import SelectionSettings


@dataclass(frozen=True)
class SelectionDecision:
    """Why a nominated tile was kept or dropped."""

    tile_id: int
    kept: bool
    reasons: list[str]  # subset of "attribute", "report", "cluster", in priority order
    prompt_id: str | None  # best library prompt for this tile
    score: float | None  # attribute score (max cosine over library prompts)
    report_score: float | None  # sum of cosines over report prompts
    cluster_id: int
    duplicate_of: int | None = None
    priority: int = 0  # position in the dedupe order (0 = first)


@dataclass(frozen=True)
class SelectionResult:
    """Decisions for every nominated tile, plus per-tile figures for all tiles."""

    decisions: list[SelectionDecision]
    cluster_labels: np.ndarray  # (N,) cluster of every tile
    attribute_scores: np.ndarray | None  # (N,) or None without prompts
    best_prompt: np.ndarray | None  # (N,) index into prompt_ids
    report_scores: np.ndarray | None  # (N,) or None without a report
    k: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def kept_ids(self) -> list[int]:
        """Kept tile ids in priority order."""
        return [d.tile_id for d in self.decisions if d.kept]


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; equal scores keep input order."""
    if k <= 0 or scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(scores.size), -scores.astype(np.float64)))
    return order[:k]


def diverse_sample(
    emb: np.ndarray, labels: np.ndarray, centers: np.ndarray, max_tiles: int
) -> np.ndarray:
    """Round-robin over clusters (by cluster id), nearest-to-centre first, up to ``max_tiles``."""
    if max_tiles <= 0 or emb.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    d2 = ((emb - centers[labels]) ** 2).sum(1)
    queues = []
    for c in range(centers.shape[0]):
        members = np.flatnonzero(labels == c)
        queues.append(members[np.lexsort((members, d2[members]))])
    picked: list[int] = []
    depth = 0
    while len(picked) < max_tiles and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q):
                picked.append(int(q[depth]))
                if len(picked) == max_tiles:
                    break
        depth += 1
    return np.asarray(picked, dtype=np.int64)


def select_tiles(
    tile_ids: Sequence[int] | np.ndarray,
    emb: np.ndarray,
    settings: SelectionSettings | None = None,
    *,
    prompt_ids: Sequence[str] = (),
    prompt_emb: np.ndarray | None = None,
    report_emb: np.ndarray | None = None,
) -> SelectionResult:
    """Select the tiles of one slide from its unit-norm embeddings ``emb`` (N, D).

    ``prompt_emb`` (P, D) are the library/LLM prompt embeddings named by ``prompt_ids``;
    ``report_emb`` (R, D) the report prompt embeddings. Either may be absent.
    """
    settings = settings or SelectionSettings()
    ids = np.asarray(tile_ids, dtype=np.int64)
    x = np.asarray(emb, dtype=np.float32)
    n = x.shape[0]
    if ids.shape[0] != n:
        raise ValueError(f"{ids.shape[0]} tile ids for {n} embeddings")
    if n == 0:
        return SelectionResult([], np.zeros(0, np.int64), None, None, None, 0)

    attr = best = None
    if prompt_emb is not None and len(prompt_emb):
        if len(prompt_ids) != len(prompt_emb):
            raise ValueError(
                f"{len(prompt_ids)} prompt ids for {len(prompt_emb)} prompt embeddings"
            )
        sims = x @ np.asarray(prompt_emb, dtype=np.float32).T
        best = sims.argmax(1)
        attr = sims[np.arange(n), best]
    report = None
    if report_emb is not None and len(report_emb):
        report = (x @ np.asarray(report_emb, dtype=np.float32).T).sum(1)

    k = settings.kmeans_k or default_k(n, settings.max_diverse)
    km = kmeans(
        x, min(k, n), max_iter=settings.kmeans_max_iter, tol=settings.kmeans_tol, seed=settings.seed
    )
    labels = km.labels.cpu().numpy()
    centers = km.centers.cpu().numpy()

    nominations: list[tuple[str, np.ndarray]] = []
    if attr is not None:
        nominations.append(("attribute", top_k_indices(attr, settings.top_k)))
    if report is not None:
        nominations.append(("report", top_k_indices(report, settings.top_k)))
    nominations.append(("cluster", diverse_sample(x, labels, centers, settings.max_diverse)))

    order: list[int] = []
    reasons: dict[int, list[str]] = {}
    for reason, idx in nominations:
        for i in idx.tolist():
            if i not in reasons:
                reasons[i] = []
                order.append(i)
            reasons[i].append(reason)

    dup_of = greedy_dedupe(x[order], settings.duplicate_threshold)
    decisions = []
    for pos, i in enumerate(order):
        dup = dup_of[pos]
        decisions.append(
            SelectionDecision(
                tile_id=int(ids[i]),
                kept=dup < 0,
                reasons=reasons[i],
                prompt_id=prompt_ids[int(best[i])] if best is not None else None,
                score=float(attr[i]) if attr is not None else None,
                report_score=float(report[i]) if report is not None else None,
                cluster_id=int(labels[i]),
                duplicate_of=int(ids[order[dup]]) if dup >= 0 else None,
                priority=pos,
            )
        )
    return SelectionResult(
        decisions=decisions,
        cluster_labels=labels,
        attribute_scores=attr,
        best_prompt=best,
        report_scores=report,
        k=int(centers.shape[0]),
        extra={"inertia": km.inertia, "kmeans_iter": float(km.n_iter)},
    )
