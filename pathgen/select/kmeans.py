"""K-means in torch (CPU or GPU): greedy k-means++ seeding and chunked Lloyd iterations.

Distances use ``||x||² - (2 x·c - ||c||²)`` (the nearest centre maximises the bracket)
one chunk of rows at a time, so no ``N × k × d`` tensor ever exists; each chunk's arg-max
and its share of the centre sums (``index_add_``) run while the chunk is still in cache.
Convergence follows scikit-learn: stop when the summed squared centre shift is at most
``tol × mean feature variance`` (``tol = 0`` runs exactly ``max_iter`` iterations), then
re-assign labels to the final centres. A seed gives identical results on CPU.

Example::

    result = kmeans(emb, k=32, seed=0)
    result.labels, result.centers, result.inertia
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: Floats of distance scratch per chunk: 8192 rows for k = 256 (8 MiB). Bigger chunks
#: mean fewer OpenMP parallel regions per iteration, which matters on busy machines;
#: measured here, 4096 to 16384 rows run at the same speed when the machine is quiet.
CHUNK_FLOATS = 1 << 21
#: k-means++ seeding looks at no more than this many points (a seeded random subset).
INIT_MAX_POINTS = 20_000


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
    c_sq = (centers * centers).sum(1)
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    dist = torch.empty(n, dtype=x.dtype, device=x.device)
    ct = centers.T
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        d = torch.addmm(c_sq, x[s:e], ct, beta=-1, alpha=2)
        torch.max(d, 1, out=(dist[s:e], labels[s:e]))
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
    sums = torch.zeros(k, dim, dtype=x.dtype, device=x.device)
    c_sq = (centers * centers).sum(1)
    ct = centers.T
    scratch = torch.empty(min(chunk, n), k, dtype=x.dtype, device=x.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        xc = x[s:e]
        # 2 x·c - ||c||² and its max: the exact negation of the distance minus ||x||²,
        # so the same labels (first index on ties), and max-with-index runs faster than
        # min-with-index on CPU.
        d = torch.addmm(c_sq, xc, ct, beta=-1, alpha=2, out=scratch[: e - s])
        torch.max(d, 1, out=(dist[s:e], labels[s:e]))
        sums.index_add_(0, labels[s:e], xc)
    torch.sub(x_sq, dist, out=dist).clamp_(min=0)
    counts = torch.bincount(labels, minlength=k)
    new_centers = sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        far = torch.topk(dist, min(n, int(empty.numel())), sorted=True).indices
        new_centers[empty[: far.numel()]] = x[far]
    return new_centers, labels, dist, counts


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
    labels = torch.empty(n, dtype=torch.long, device=xt.device)
    dist = torch.empty(n, dtype=xt.dtype, device=xt.device)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - used after the loop
        new_centers, _, _, _ = lloyd_step(xt, centers, x_sq, chunk_size, out=(labels, dist))
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if shift < tol_abs or (tol > 0 and shift == 0.0):
            converged = True
            break
    labels, dist = assign(xt, centers, x_sq, chunk_size)
    return KMeansResult(
        centers=centers,
        labels=labels,
        inertia=float(dist.double().sum()),
        n_iter=it,
        converged=converged,
    )


def default_k(n_tiles: int, max_diverse: int) -> int:
    """Cluster count when the config leaves it unset: ``clamp(round(N / 20), 1, max_diverse)``.

    About twenty tiles per cluster separates tissue types without splitting one type into
    many near-identical clusters; capping at ``max_diverse`` lets the round-robin draw take
    at least one tile from every cluster.
    """
    return int(min(max(1, round(n_tiles / 20)), max(1, max_diverse), max(1, n_tiles)))
