"""K-means in torch (CPU or GPU): greedy k-means++ seeding and chunked Lloyd iterations.

Distances use ``||x||² - (2 x·c - ||c||²)`` (the nearest centre maximises the bracket)
one chunk of rows at a time, so no ``N × k × d`` tensor ever exists; each chunk's arg-max
and its share of the centre sums run while the chunk is still in cache. Once few labels
change between iterations (and ``N × k`` bounds fit in memory), the iterations switch to
Elkan's bounds, which skip the distances that cannot change a label: the same labels and
centres as plain Lloyd, for a fraction of the work. Convergence follows scikit-learn: stop
when the summed squared centre shift is at most ``tol × mean feature variance``
(``tol = 0`` runs exactly ``max_iter`` iterations), then re-assign labels to the final
centres. A seed gives identical results on the same machine.

Example::

    result = kmeans(emb, k=32, seed=0)
    result.labels, result.centers, result.inertia
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

#: Floats of score scratch per chunk: 2048 rows for k = 256 (2 MiB, stays in cache).
CHUNK_FLOATS = 1 << 19
#: k-means++ seeding looks at no more than this many points (a seeded random subset).
INIT_MAX_POINTS = 20_000
#: Elkan bounds take ``N × k`` floats; above this many a fit stays with plain Lloyd steps.
BOUNDS_MAX_FLOATS = 1 << 26
#: Switch to bounded iterations once an iteration changes at most this share of labels.
BOUNDS_SWITCH_CHANGED = 0.002
#: Relative slack (squared-distance units, times ``||x||² + max ||c||²``) on bounds.
BOUND_SLACK = 1e-5


@dataclass(frozen=True)
class KMeansResult:
    """Final centres ``(k, d)``, labels ``(N,)``, inertia and the iterations run."""

    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int
    converged: bool


def as_tensor(
    x: np.ndarray | torch.Tensor, device: torch.device | str | None = None
) -> torch.Tensor:
    """``x`` as a contiguous float32 tensor on ``device`` (default: where it is / cpu)."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if device is not None:
        t = t.to(device)
    return t.to(torch.float32).contiguous()


def _chunk_for(k: int, chunk_size: int | None) -> int:
    if chunk_size:
        return chunk_size
    return max(256, min(32768, CHUNK_FLOATS // max(k, 1)))


@functools.cache
def _onednn_linear() -> bool:
    """Whether oneDNN's fp32 linear works here and agrees with ``addmm`` (checked once)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        x, c = torch.randn(37, 19, generator=gen), torch.randn(5, 19, generator=gen)
        c_sq = (c * c).sum(1)
        got = torch.ops.mkldnn._linear_pointwise(x, 2 * c, -c_sq, "none", [], "")
        want = torch.addmm(c_sq, x, c.T, beta=-1, alpha=2)
        return bool(torch.allclose(got, want, rtol=1e-5, atol=1e-4))
    except Exception as exc:  # an older or unusual torch build: use addmm
        log.debug("oneDNN linear unavailable for k-means (%s); using addmm", exc)
        return False


class Scorer:
    """``2 x·c - ||c||²`` for chunks of rows against fixed centres, and its arg-max.

    The nearest centre maximises the bracket. On the CPU the product runs through
    oneDNN's fp32 linear with the bias fused (measured 2.3x MKL's ``sgemm`` on the AMD
    EPYC here, same fp32 results within rounding) and the arg-max through numpy (5x
    torch's max-with-index); elsewhere ``addmm`` and ``torch.max``. Ties go to the first
    index either way.
    """

    def __init__(self, centers: torch.Tensor) -> None:
        self.centers = centers
        self.c_sq = (centers * centers).sum(1)
        self.cpu = centers.device.type == "cpu"
        self.onednn = self.cpu and _onednn_linear()
        if self.onednn:
            self.weight = (2 * centers).contiguous()
            self.bias = -self.c_sq

    def scores(self, xc: torch.Tensor) -> torch.Tensor:
        """``(rows, k)`` brackets for the rows ``xc``."""
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(xc, self.weight, self.bias, "none", [], "")
        return torch.addmm(self.c_sq, xc, self.centers.T, beta=-1, alpha=2)

    def nearest(self, scores: torch.Tensor, best: torch.Tensor, labels: torch.Tensor) -> None:
        """Write each row's best bracket and its centre into ``best`` and ``labels``."""
        if self.cpu:
            np.argmax(scores.numpy(), axis=1, out=labels.numpy())
            torch.gather(scores, 1, labels.unsqueeze(1), out=best.unsqueeze(1))
        else:
            torch.max(scores, 1, out=(best, labels))


def assign(
    x: torch.Tensor,
    centers: torch.Tensor,
    x_sq: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre per row and its squared distance (clamped at 0), chunked."""
    n = x.shape[0]
    chunk = _chunk_for(centers.shape[0], chunk_size)
    if x_sq is None:
        x_sq = (x * x).sum(1)
    scorer = Scorer(centers)
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    dist = torch.empty(n, dtype=x.dtype, device=x.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        scorer.nearest(scorer.scores(x[s:e]), dist[s:e], labels[s:e])
    torch.sub(x_sq, dist, out=dist).clamp_(min=0)
    return labels, dist


def lloyd_step(
    x: torch.Tensor,
    centers: torch.Tensor,
    x_sq: torch.Tensor,
    chunk_size: int | None = None,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Lloyd iteration: assign to ``centers``, then recompute the means.

    Returns ``(new_centers, labels, min_sq_dist, counts)``; labels and distances refer to
    the *input* centres. An empty cluster takes the point farthest from its centre
    (points already taken are skipped), as scikit-learn does.
    """
    n, dim = x.shape
    k = centers.shape[0]
    chunk = _chunk_for(k, chunk_size)
    if out is None:
        labels = torch.empty(n, dtype=torch.long, device=x.device)
        dist = torch.empty(n, dtype=x.dtype, device=x.device)
    else:
        labels, dist = out
    scorer = Scorer(centers)
    sums = torch.zeros(k, dim, dtype=x.dtype, device=x.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        xc = x[s:e]
        scorer.nearest(scorer.scores(xc), dist[s:e], labels[s:e])
        sums.index_add_(0, labels[s:e], xc)
    torch.sub(x_sq, dist, out=dist).clamp_(min=0)
    counts = torch.bincount(labels, minlength=k)
    new_centers = sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
    return _reseed_empty(x, new_centers, counts, dist), labels, dist, counts


def _reseed_empty(
    x: torch.Tensor, centers: torch.Tensor, counts: torch.Tensor, dist: torch.Tensor
) -> torch.Tensor:
    """Empty clusters take the points farthest from their centres (in place)."""
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        far = torch.topk(dist, min(dist.numel(), int(empty.numel())), sorted=True).indices
        centers[empty[: far.numel()]] = x[far]
    return centers


def kmeans_plusplus(
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    x_sq: torch.Tensor | None = None,
    n_local_trials: int | None = None,
) -> torch.Tensor:
    """Greedy k-means++ seeding (scikit-learn's variant); returns ``(k, d)`` centres."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means++ needs 1 <= k <= N (k={k}, N={n})")
    trials = n_local_trials or 2 + int(math.log(k))
    if x_sq is None:
        x_sq = (x * x).sum(1)
    gen_device = generator.device
    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=generator, device=gen_device).item())
    centers[0] = x[first]
    closest = (x_sq - 2 * (x @ x[first]) + x_sq[first]).clamp_(min=0)
    potential = closest.sum()
    for c in range(1, k):
        draws = torch.rand(trials, generator=generator, device=gen_device, dtype=torch.float64)
        cum = torch.cumsum(closest.double(), 0)
        ids = torch.searchsorted(cum, draws.to(x.device) * cum[-1]).clamp_(max=n - 1)
        cand = x[ids]
        d = (x_sq.unsqueeze(1) - 2 * (x @ cand.T) + x_sq[ids].unsqueeze(0)).clamp_(min=0)
        d = torch.minimum(d, closest.unsqueeze(1))
        pots = d.sum(0)
        best = int(torch.argmin(pots).item())
        potential = pots[best]
        closest = d[:, best].contiguous()
        centers[c] = cand[best]
    del potential
    return centers


def kmeans(
    x: np.ndarray | torch.Tensor,
    k: int,
    *,
    init: np.ndarray | torch.Tensor | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` groups (``k`` is capped at the row count).

    ``init`` gives explicit initial centres; otherwise greedy k-means++ on a seeded
    subset of at most :data:`INIT_MAX_POINTS` rows.
    """
    xt = as_tensor(x, device)
    n = xt.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one row")
    x_sq = (xt * xt).sum(1)
    if init is not None:
        centers = as_tensor(init, xt.device).clone()
        k = centers.shape[0]
    else:
        k = max(1, min(k, n))
        gen = torch.Generator(device="cpu").manual_seed(seed)
        if n > INIT_MAX_POINTS:
            subset = torch.randperm(n, generator=gen)[:INIT_MAX_POINTS].to(xt.device)
            centers = kmeans_plusplus(xt[subset], k, gen, x_sq[subset])
        else:
            centers = kmeans_plusplus(xt, k, gen, x_sq)
    tol_abs = tol * float(xt.var(0, unbiased=False).mean()) if tol > 0 else 0.0
    chunk = _chunk_for(k, chunk_size)
    may_bound = n * k <= BOUNDS_MAX_FLOATS

    labels = torch.empty(n, dtype=torch.long, device=xt.device)
    previous = torch.empty_like(labels)
    dist = torch.empty(n, dtype=xt.dtype, device=xt.device)
    bounds: _Bounds | None = None
    changed = n
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - used after the loop
        if bounds is None and may_bound and changed <= BOUNDS_SWITCH_CHANGED * n:
            bounds = _Bounds(xt, x_sq, centers, chunk)
        if bounds is None:
            labels, previous = previous, labels
            new_centers = lloyd_step(xt, centers, x_sq, chunk, out=(labels, dist))[0]
            changed = n if it == 1 else int((labels != previous).sum())
        else:
            new_centers = bounds.next_centers(centers)
        shift = float(((new_centers - centers) ** 2).sum())
        if bounds is not None:
            bounds.update(new_centers, (new_centers - centers).norm(dim=1))
        centers = new_centers
        if shift < tol_abs or (tol > 0 and shift == 0.0):
            converged = True
            break
    if bounds is not None:  # already assigned to the final centres
        labels, inertia = bounds.labels, bounds.inertia(centers)
    else:
        labels, dist = assign(xt, centers, x_sq, chunk)
        inertia = float(dist.double().sum())
    return KMeansResult(
        centers=centers, labels=labels, inertia=inertia, n_iter=it, converged=converged
    )


class _Bounds:
    """Elkan's bounds for exact Lloyd iterations that skip provably useless distances.

    Per row: its label, an upper bound on the distance to its centre, and a lower bound
    on the distance to every other centre (``+inf`` at its own). When centre ``j`` moves
    by ``δ_j`` the upper bound grows by its centre's ``δ`` and lower bounds shrink by
    ``δ_j``; a row whose upper bound stays below every lower bound (or below half the
    distance from its centre to the nearest other one) keeps its label without a
    distance being computed. Cluster sums are kept in float64 and updated only for rows
    that change label. Distances carry a relative slack of :data:`BOUND_SLACK` (in
    squared units) so float rounding never makes a bound unsafe.
    """

    def __init__(self, x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor, chunk: int):
        n, k = x.shape[0], centers.shape[0]
        self.x, self.x_sq, self.chunk = x, x_sq, chunk
        self.labels = torch.empty(n, dtype=torch.long, device=x.device)
        self.upper = torch.empty(n, dtype=x.dtype, device=x.device)
        self.lower = torch.empty(n, k, dtype=x.dtype, device=x.device)
        sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
        scorer = Scorer(centers)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            self._assign(scorer, self.x[s:e], slice(s, e))
            sums.index_add_(0, self.labels[s:e], self.x[s:e])
        self.sums = sums.double()
        self.counts = torch.bincount(self.labels, minlength=k).double()

    def _assign(self, scorer: Scorer, xr: torch.Tensor, rows: slice | torch.Tensor) -> None:
        """Nearest centre, upper and lower bounds of the rows ``xr`` (all distances)."""
        scores = scorer.scores(xr)
        best = torch.empty(xr.shape[0], dtype=xr.dtype, device=xr.device)
        labels = torch.empty(xr.shape[0], dtype=torch.long, device=xr.device)
        scorer.nearest(scores, best, labels)
        xs = self.x_sq[rows]
        slack = BOUND_SLACK * (xs + scorer.c_sq.max())
        self.upper[rows] = (xs - best).add_(slack).clamp_(min=0).sqrt_()
        # d_j = sqrt(||x||² - (2 x·c_j - ||c_j||²) - slack)
        lower = torch.sub((xs - slack).unsqueeze(1), scores, out=scores).clamp_(min=0).sqrt_()
        lower.scatter_(1, labels.unsqueeze(1), math.inf)
        self.lower[rows] = lower
        self.labels[rows] = labels

    def next_centers(self, centers: torch.Tensor) -> torch.Tensor:
        """Means of the current labels; empty clusters reseeded as in :func:`lloyd_step`."""
        counts = self.counts.round().long()
        means = (self.sums / self.counts.clamp(min=1).unsqueeze(1)).to(self.x.dtype)
        if bool((counts == 0).any()):
            means = _reseed_empty(self.x, means, counts, self._sq_distances(centers))
        return means

    def update(self, centers: torch.Tensor, moved: torch.Tensor) -> None:
        """Re-assign every row to ``centers``, which moved by ``moved`` (per centre)."""
        scorer = Scorer(centers)
        c_sq = scorer.c_sq
        gaps = (c_sq.unsqueeze(1) + c_sq.unsqueeze(0) - 2 * (centers @ centers.T)).clamp_(min=0)
        half_gap = 0.5 * gaps.fill_diagonal_(math.inf).amin(1).sqrt_()
        slack_c = BOUND_SLACK * c_sq.max()
        self.upper += moved[self.labels]
        n = self.x.shape[0]
        for s in range(0, n, self.chunk):
            e = min(n, s + self.chunk)
            nearest_other = self.lower[s:e].sub_(moved).amin(1)
            own, upper = self.labels[s:e], self.upper[s:e]
            idx = torch.nonzero((upper > nearest_other) & (upper > half_gap[own])).squeeze(1)
            if idx.numel() == 0:
                continue
            rows, xr, was = idx + s, self.x[idx + s], own[idx]
            # tighten the upper bound to the exact distance, then test again
            d2 = self.x_sq[rows] - 2 * (xr * centers[was]).sum(1) + c_sq[was]
            upper[idx] = (d2 + BOUND_SLACK * self.x_sq[rows] + slack_c).clamp_(min=0).sqrt_()
            still = upper[idx] > nearest_other[idx]
            if not bool(still.any()):
                continue
            rows, xr, was = rows[still], xr[still], was[still]
            self._assign(scorer, xr, rows)
            now = self.labels[rows]
            moved_rows = torch.nonzero(now != was).squeeze(1)
            if moved_rows.numel():
                self._move(rows[moved_rows], was[moved_rows], now[moved_rows])

    def _move(self, rows: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> None:
        xr = self.x[rows].double()
        ones = torch.ones(rows.numel(), dtype=torch.float64, device=rows.device)
        self.sums.index_add_(0, old, xr, alpha=-1)
        self.counts.index_add_(0, old, ones, alpha=-1)
        self.sums.index_add_(0, new, xr)
        self.counts.index_add_(0, new, ones)

    def _sq_distances(self, centers: torch.Tensor) -> torch.Tensor:
        """Exact squared distance of every row to its (labelled) centre."""
        c_sq = (centers * centers).sum(1)
        out = torch.empty_like(self.upper)
        n = self.x.shape[0]
        for s in range(0, n, self.chunk):
            e = min(n, s + self.chunk)
            own = self.labels[s:e]
            dot = (self.x[s:e] * centers[own]).sum(1)
            out[s:e] = (self.x_sq[s:e] - 2 * dot + c_sq[own]).clamp_(min=0)
        return out

    def inertia(self, centers: torch.Tensor) -> float:
        """Sum of squared distances to the assigned centres, from the cluster sums."""
        c = centers.double()
        total = self.x_sq.double().sum() - 2 * (c * self.sums).sum()
        return max(0.0, float(total + (self.counts * (c * c).sum(1)).sum()))


def default_k(n_tiles: int, max_diverse: int) -> int:
    """Cluster count when the config leaves it unset: ``clamp(round(N / 20), 1, max_diverse)``.

    About twenty tiles per cluster separates tissue types without splitting one type into
    many near-identical clusters; capping at ``max_diverse`` lets the round-robin draw take
    at least one tile from every cluster.
    """
    return int(min(max(1, round(n_tiles / 20)), max(1, max_diverse), max(1, n_tiles)))
