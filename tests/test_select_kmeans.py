"""Torch k-means against scikit-learn, determinism, convergence and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from pathgen.select import kmeans as kmeans_module
from pathgen.select.kmeans import Scorer, assign, default_k, kmeans


def _blobs(n: int = 3000, d: int = 32, centers: int = 12, spread: float = 0.6, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, d)).astype(np.float32) * 3
    truth = rng.integers(0, centers, n)
    x = means[truth] + spread * rng.standard_normal((n, d)).astype(np.float32)
    return x.astype(np.float32), truth


@pytest.mark.parametrize("iters", [1, 5, 20])
def test_inertia_matches_sklearn_with_same_initial_centres(iters):
    x, _ = _blobs(spread=2.5)  # overlapping blobs: Lloyd iterations keep changing labels
    rng = np.random.default_rng(1)
    init = x[rng.choice(len(x), 24, replace=False)]
    ours = kmeans(x, 24, init=init, max_iter=iters, tol=0.0, chunk_size=700)
    ref = KMeans(24, init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd").fit(x)
    assert ours.n_iter == iters
    assert abs(ours.inertia / ref.inertia_ - 1) < 0.01
    agree = (ours.labels.numpy() == ref.labels_).mean()
    assert agree > 0.98
    np.testing.assert_allclose(ours.centers.numpy(), ref.cluster_centers_, atol=1e-3)


def test_same_seed_same_result_and_chunking_does_not_matter():
    x, _ = _blobs(n=2500)
    a = kmeans(x, 10, seed=3, max_iter=30)
    b = kmeans(x, 10, seed=3, max_iter=30)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers)
    assert a.inertia == b.inertia
    c = kmeans(x, 10, seed=3, max_iter=30, chunk_size=333)
    assert torch.equal(a.labels, c.labels)
    np.testing.assert_allclose(a.centers.numpy(), c.centers.numpy(), atol=1e-5)


def test_kmeanspp_finds_separated_blobs_and_converges():
    x, truth = _blobs(n=2000, centers=8, spread=0.2)
    res = kmeans(x, 8, seed=0, max_iter=100, tol=1e-4)
    assert res.converged and res.n_iter < 100
    labels = res.labels.numpy()
    for blob in range(8):  # every true blob lands in exactly one cluster
        assert len(set(labels[truth == blob].tolist())) == 1
    assert len(set(labels.tolist())) == 8
    ref = KMeans(8, n_init=5, random_state=0).fit(x)
    assert res.inertia <= ref.inertia_ * 1.01


def test_empty_clusters_are_reseeded():
    x, _ = _blobs(n=500, centers=5)
    init = np.repeat(x[:1], 6, axis=0)  # six identical centres: five start empty
    res = kmeans(x, 6, init=init, max_iter=10, tol=0.0)
    assert torch.isfinite(res.centers).all()
    assert len(torch.unique(res.labels)) == 6


def test_assign_matches_brute_force():
    x, _ = _blobs(n=400, d=8)
    c = x[:7].copy()
    labels, dist = assign(torch.from_numpy(x), torch.from_numpy(c), chunk_size=64)
    brute = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels.numpy(), brute.argmin(1))
    np.testing.assert_allclose(dist.numpy(), brute.min(1), rtol=1e-4, atol=1e-3)


def test_k_is_capped_by_rows_and_default_k():
    x, _ = _blobs(n=5, d=4)
    assert kmeans(x, 50, seed=0).centers.shape[0] == 5
    assert default_k(0, 256) == 1
    assert default_k(10, 256) == 1
    assert default_k(1000, 256) == 50
    assert default_k(100_000, 256) == 256
    assert default_k(100_000, 0) == 1


def _plain_only(monkeypatch):
    monkeypatch.setattr(kmeans_module, "BOUNDS_MAX_FLOATS", 0)


@pytest.mark.parametrize("switch_at", [1.0, 0.02])
def test_bounded_iterations_give_plain_lloyds_result(monkeypatch, switch_at):
    """Elkan's bounds skip work, never change the answer: same labels, centres, inertia."""
    x, _ = _blobs(n=4000, d=24, centers=16, spread=1.5, seed=4)
    init = x[np.random.default_rng(2).choice(len(x), 20, replace=False)]
    monkeypatch.setattr(kmeans_module, "BOUNDS_SWITCH_CHANGED", switch_at)
    bounded = kmeans(x, 20, init=init, max_iter=60, tol=0.0, chunk_size=500)
    with monkeypatch.context() as m:
        _plain_only(m)
        plain = kmeans(x, 20, init=init, max_iter=60, tol=0.0, chunk_size=500)
    assert torch.equal(bounded.labels, plain.labels)
    np.testing.assert_allclose(bounded.centers.numpy(), plain.centers.numpy(), atol=1e-5)
    assert bounded.inertia == pytest.approx(plain.inertia, rel=1e-5)
    exact, dist = assign(torch.from_numpy(x), bounded.centers)  # labels are the true argmin
    assert torch.equal(exact, bounded.labels)
    assert bounded.inertia == pytest.approx(float(dist.double().sum()), rel=1e-5)


def test_bounded_iterations_skip_distances_once_centres_settle(monkeypatch):
    x, _ = _blobs(n=3000, d=16, centers=10, spread=0.8, seed=5)
    computed = []
    original = kmeans_module._Bounds._assign

    def counting(self, scorer, xr, rows):
        computed.append(xr.shape[0])
        return original(self, scorer, xr, rows)

    monkeypatch.setattr(kmeans_module._Bounds, "_assign", counting)
    monkeypatch.setattr(kmeans_module, "BOUNDS_SWITCH_CHANGED", 1.0)
    res = kmeans(x, 10, seed=1, max_iter=40, tol=0.0, chunk_size=3000)
    assert res.n_iter == 40
    assert computed[0] == 3000  # the first assignment computes every distance
    assert sum(computed[1:]) < 0.1 * 3000 * 40  # later ones almost none


def test_bounded_iterations_reseed_empty_clusters(monkeypatch):
    monkeypatch.setattr(kmeans_module, "BOUNDS_SWITCH_CHANGED", 1.0)
    x, _ = _blobs(n=500, centers=5)
    init = np.repeat(x[:1], 6, axis=0)
    res = kmeans(x, 6, init=init, max_iter=10, tol=0.0)
    with monkeypatch.context() as m:
        _plain_only(m)
        plain = kmeans(x, 6, init=init, max_iter=10, tol=0.0)
    assert len(torch.unique(res.labels)) == 6
    np.testing.assert_allclose(res.centers.numpy(), plain.centers.numpy(), atol=1e-5)


def test_cpu_scorer_matches_addmm_and_torch_max():
    x, _ = _blobs(n=777, d=40)
    xt, c = torch.from_numpy(x), torch.from_numpy(x[::50].copy())
    fast = Scorer(c)
    reference = Scorer(c)
    reference.onednn, reference.cpu = False, False  # the addmm + torch.max path (as on GPU)
    s_fast, s_ref = fast.scores(xt), reference.scores(xt)
    torch.testing.assert_close(s_fast, s_ref, rtol=1e-5, atol=1e-4)
    best = [torch.empty(777), torch.empty(777)]
    labels = [torch.empty(777, dtype=torch.long), torch.empty(777, dtype=torch.long)]
    fast.nearest(s_ref, best[0], labels[0])
    reference.nearest(s_ref, best[1], labels[1])
    assert torch.equal(labels[0], labels[1]) and torch.equal(best[0], best[1])
