"""Torch k-means (pathgen.select.kmeans) against scikit-learn's KMeans, same run.

Same data, same initial centres, ``n_init=1``, ``tol=0`` and the same ``max_iter`` for
both, so both run exactly ``--iters`` Lloyd iterations plus a final assignment.
Reports the fit time ratio (ours / sklearn), the inertia ratio, and one Lloyd iteration
against the bare distance product ``X @ C.T`` it contains: the same chunks through the
same product (``Scorer.scores``: oneDNN's fp32 linear on the CPU, ``addmm`` elsewhere).
For reference it also times that product through ``addmm`` (MKL's ``sgemm`` on the CPU).

    python benchmarks/bench_kmeans.py                       # 200000 x 512, k=256
    python benchmarks/bench_kmeans.py --n 20000 --iters 5   # quick
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.cluster import KMeans

from pathgen.select.kmeans import Scorer, _chunk_for, kmeans, lloyd_step


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_data(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm mixture data (like CLIP embeddings) and k initial centres drawn from it."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((max(8, k // 4), d)).astype(np.float32)
    x = means[rng.integers(0, len(means), n)] + 0.7 * rng.standard_normal((n, d), np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    init = x[rng.choice(n, k, replace=False)].copy()
    return x, init


def bench_torch(x: np.ndarray, init: np.ndarray, iters: int, device: str, repeats: int) -> dict:
    """Per-iteration and bare-product times (interleaved, best of many) and one full fit."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    xt = torch.from_numpy(x).to(device)
    ct = torch.from_numpy(init).to(device)
    x_sq = (xt * xt).sum(1)
    n, k = xt.shape[0], ct.shape[0]
    chunk = _chunk_for(k, None)
    c_sq = (ct * ct).sum(1)
    scratch = torch.empty(min(chunk, n), k, device=device)

    scorer = Scorer(ct)

    def bare_product() -> None:
        """The distance product a Lloyd step contains: same chunks, same product."""
        for s in range(0, n, chunk):
            scorer.scores(xt[s : min(n, s + chunk)])

    def addmm_product() -> None:
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            torch.addmm(c_sq, xt[s:e], ct.T, beta=-1, alpha=2, out=scratch[: e - s])

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    timed(bare_product)  # warm-up
    t_mm = t_iter = t_addmm = float("inf")
    c = ct
    for _ in range(repeats * iters):  # alternate so machine noise hits both alike
        t_mm = min(t_mm, timed(bare_product))
        t_addmm = min(t_addmm, timed(addmm_product))
        sync()
        t0 = time.perf_counter()
        c = lloyd_step(xt, c, x_sq)[0]
        sync()
        t_iter = min(t_iter, time.perf_counter() - t0)
    return {
        "iter_s": t_iter,
        "matmul_s": t_mm,
        "addmm_s": t_addmm,
        "onednn": scorer.onednn,
        "xt": xt,
        "ct": ct,
        "timed": timed,
    }


def fit_torch(state: dict, iters: int) -> tuple[float, float]:
    """One full fit (init given, tol 0, ``iters`` iterations + final assignment)."""
    box = {}
    xt, ct = state["xt"], state["ct"]
    t = state["timed"](
        lambda: box.setdefault("r", kmeans(xt, ct.shape[0], init=ct, max_iter=iters, tol=0.0))
    )
    return t, box["r"].inertia


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x, init = make_data(args.n, args.d, args.k, args.seed)
    ours = bench_torch(x, init, args.iters, "cpu", args.repeats)

    def fit_sklearn() -> tuple[float, float]:
        km = KMeans(args.k, init=init, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd")
        t0 = time.perf_counter()
        km.fit(x)
        return time.perf_counter() - t0, float(km.inertia_)

    t_fit = t_sk = float("inf")
    for _ in range(args.repeats):  # alternate the two fits
        t, inertia = fit_torch(ours, args.iters)
        t_fit = min(t_fit, t)
        t, sk_inertia = fit_sklearn()
        t_sk = min(t_sk, t)
    ours.update(fit_s=t_fit, inertia=inertia)
    print(
        f"cpu: ours {t_fit:.3f}s (iter {ours['iter_s']:.3f}s, X@C.T {ours['matmul_s']:.3f}s)"
        f" | sklearn {t_sk:.3f}s | inertia ours {inertia:.2f} sklearn {sk_inertia:.2f}"
    )
    figures = {
        "bench": "kmeans",
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "iters": args.iters,
        "threads": torch.get_num_threads(),
        "time_ratio_vs_sklearn": round(t_fit / t_sk, 3),
        "inertia_ratio": round(ours["inertia"] / sk_inertia, 5),
        "iter_vs_matmul": round(ours["iter_s"] / ours["matmul_s"], 3),
        "iter_s": round(ours["iter_s"], 4),
        "matmul_s": round(ours["matmul_s"], 4),
        "addmm_s": round(ours["addmm_s"], 4),
        "product": "onednn_linear" if ours["onednn"] else "addmm",
        "sklearn_iter_s": round(t_sk / args.iters, 4),
        "goal_time_ratio": 0.8,
        "goal_iter_vs_matmul": 1.25,
        "device": "cpu",
    }
    if torch.cuda.is_available():
        gpu = bench_torch(x, init, args.iters, "cuda", args.repeats)
        t_gpu, gpu_inertia = min(fit_torch(gpu, args.iters) for _ in range(args.repeats))
        print(f"cuda: fit {t_gpu:.4f}s iter {gpu['iter_s']:.5f}s X@C.T {gpu['matmul_s']:.5f}s")
        figures["cuda"] = {
            "fit_s": round(t_gpu, 4),
            "time_ratio_vs_sklearn_cpu": round(t_gpu / t_sk, 4),
            "inertia_ratio": round(gpu_inertia / sk_inertia, 5),
            "iter_vs_matmul": round(gpu["iter_s"] / gpu["matmul_s"], 3),
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
