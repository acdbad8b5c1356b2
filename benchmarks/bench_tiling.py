"""Tiling stage throughput against a plain ``read_region`` loop over the same grid.

Run::

    .venv/bin/python benchmarks/bench_tiling.py [--size 40000x30000] [--mpp 0.25] [--rounds 3]

The full stage (open, fingerprint, tissue detection, grid, reading every kept tile's
pixels at 0.5 µm/px, 336 px) with 1 and 2 reader threads is timed against a
single-threaded loop of ``OpenSlide.read_region`` over the same tiles, reading the
same level and resizing the same way. Each figure is the best of ``--rounds``
interleaved runs (the machine is shared). The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synth import cached_synthetic_slide  # noqa: E402

from pathgen.slides import TilingParams, tile_slide  # noqa: E402
from pathgen.slides.reader import RESAMPLE  # noqa: E402


def plain_loop(path: Path, tiles: list) -> float:
    """Seconds for a naive single-threaded read_region loop over ``tiles``."""
    import openslide

    start = time.perf_counter()
    slide = openslide.OpenSlide(str(path))
    for t in tiles:
        ds = slide.level_downsamples[t.read_level]
        side = round(t.size_l0 / ds)
        img = slide.read_region((t.x, t.y), t.read_level, (side, side)).convert("RGB")
        if img.size != (t.out_px, t.out_px):
            img = img.resize((t.out_px, t.out_px), RESAMPLE)
    slide.close()
    return time.perf_counter() - start


def stage(path: Path, params: TilingParams, threads: int) -> tuple[float, int]:
    """Seconds and kept tiles for the full tiling stage with ``threads`` readers."""
    start = time.perf_counter()
    result = tile_slide(path, params, threads=threads)
    return time.perf_counter() - start, len(result.tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="40000x30000", help="WIDTHxHEIGHT of the slide")
    parser.add_argument("--mpp", type=float, default=0.25, help="slide µm/px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    path = cached_synthetic_slide(width, height, args.mpp, args.seed, args.cache_dir)
    params = TilingParams(mpp=0.5, tile_size=336)

    warm = tile_slide(path, params, threads=2)  # page cache warm, grid for the plain loop
    tiles = warm.tiles
    n = len(tiles)
    print(
        f"slide {path.name}: {n} tiles of {warm.grid_cells} grid cells, "
        f"levels {warm.slide.level_count}, read level {tiles[0].read_level}",
        flush=True,
    )
    best = {"plain": float("inf"), "1w": float("inf"), "2w": float("inf")}
    for r in range(args.rounds):
        best["plain"] = min(best["plain"], plain_loop(path, tiles))
        for key, threads in (("1w", 1), ("2w", 2)):
            secs, kept = stage(path, params, threads)
            if kept != n:
                raise SystemExit(f"stage kept {kept} tiles, expected {n}")
            best[key] = min(best[key], secs)
        print(
            f"round {r + 1}: " + ", ".join(f"{k} {n / v:.0f} tiles/s" for k, v in best.items()),
            flush=True,
        )
    load = os.getloadavg()
    summary = {
        "bench": "tiling",
        "slide": f"{width}x{height}@{args.mpp}",
        "tiles": n,
        "plain_tiles_per_s": round(n / best["plain"], 1),
        "stage_1w_tiles_per_s": round(n / best["1w"], 1),
        "stage_2w_tiles_per_s": round(n / best["2w"], 1),
        "ratio_1w": round(best["plain"] / best["1w"], 3),
        "ratio_2w": round(best["plain"] / best["2w"], 3),
        "goal_1w": 0.9,
        "goal_2w": 1.7,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(load[0], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
