"""Torch k-means (pathgen.select.kmeans) against scikit-learn's KMeans, same run.

Same data, same initial centres, ``n_init=1``, ``tol=0`` and the same ``max_iter`` for
both, so both run exactly ``--iters`` Lloyd iterations plus a final assignment.
Reports the fit time ratio (ours / sklearn), the inertia ratio, and one Lloyd iteration
against the bare distance product ``X @ C.T`` it contains.

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

from pathgen.select.kmeans import kmeans, lloyd_step


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
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    xt = torch.from_numpy(x).to(device)
    ct = torch.from_numpy(init).to(device)
    x_sq = (xt * xt).sum(1)
    out = torch.empty(xt.shape[0], ct.shape[0], device=device)

    def matmul() -> None:
        torch.mm(xt, ct.T, out=out)
        sync()

    def steps() -> None:
        c = ct
        for _ in range(iters):
            c = lloyd_step(xt, c, x_sq)[0]
        sync()

    result = {}

    def fit() -> None:
        result["r"] = kmeans(xt, ct.shape[0], init=ct, max_iter=iters, tol=0.0)
        sync()

    matmul()
    t_mm = best_of(matmul, repeats + 2)
    t_iter = best_of(steps, repeats) / iters
    t_fit = best_of(fit, repeats)
    return {"fit_s": t_fit, "iter_s": t_iter, "matmul_s": t_mm, "inertia": result["r"].inertia}


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

    sk = {}

    def fit_sklearn() -> None:
        km = KMeans(args.k, init=init, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd")
        sk["m"] = km.fit(x)

    t_sk = best_of(fit_sklearn, args.repeats)
    sk_inertia = float(sk["m"].inertia_)
    print(
        f"cpu: ours {ours['fit_s']:.3f}s (iter {ours['iter_s']:.3f}s,"
        f" X@C.T {ours['matmul_s']:.3f}s)"
        f" | sklearn {t_sk:.3f}s ({sk['m'].n_iter_} iters) | inertia ours {ours['inertia']:.2f}"
        f" sklearn {sk_inertia:.2f}"
    )
    figures = {
        "bench": "kmeans",
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "iters": args.iters,
        "threads": torch.get_num_threads(),
        "time_ratio_vs_sklearn": round(ours["fit_s"] / t_sk, 3),
        "inertia_ratio": round(ours["inertia"] / sk_inertia, 5),
        "iter_vs_matmul": round(ours["iter_s"] / ours["matmul_s"], 3),
        "iter_s": round(ours["iter_s"], 4),
        "matmul_s": round(ours["matmul_s"], 4),
        "sklearn_iter_s": round(t_sk / args.iters, 4),
        "goal_time_ratio": 0.8,
        "goal_iter_vs_matmul": 1.25,
        "device": "cpu",
    }
    if torch.cuda.is_available():
        gpu = bench_torch(x, init, args.iters, "cuda", args.repeats)
        print(
            f"cuda: ours {gpu['fit_s']:.3f}s iter {gpu['iter_s']:.4f}s X@C.T {gpu['matmul_s']:.4f}s"
        )
        figures["cuda"] = {
            "fit_s": round(gpu["fit_s"], 4),
            "time_ratio_vs_sklearn_cpu": round(gpu["fit_s"] / t_sk, 4),
            "inertia_ratio": round(gpu["inertia"] / sk_inertia, 5),
            "iter_vs_matmul": round(gpu["iter_s"] / gpu["matmul_s"], 3),
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
