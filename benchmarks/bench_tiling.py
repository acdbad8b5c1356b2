"""Tile stage: per-slide cost against a CLAM-style baseline, read throughput, CLI cold start.

Run::

    .venv/bin/python benchmarks/bench_tiling.py [--rounds 5] [--cache-dir bench-cache]

1. **Per-slide tile stage.** The shipped path (``pathgen tile``'s worker: claim, the
   tile handler, the completion that writes the slide row and its tiles, on a fresh
   SQLite database) over 6 synthetic slides of 16000x12000 px at 0.5 µm/px, divided by 6,
   against a minimal CLAM-style pipeline run in the same process on the same slides:
   read the level nearest a 64x downsample, HSV saturation, median blur, Otsu,
   morphological close, 336 px grid coordinates whose centre is tissue, in memory, no
   database. The stage runs one slide at a time (``tiling.workers = 1``), like the
   baseline; the default (2 slides at a time) is reported too.
2. **Read throughput.** ``tile_slide(verify=True)`` (tissue, grid and every kept tile
   decoded, as ``tiling.verify_tiles`` does) with 1 and 2 reader threads against a plain
   single-threaded ``OpenSlide.read_region`` loop over the same tiles (``--size``, default
   40000x30000 at 0.25 µm/px).
3. **Cold start** of ``pathgen tile --help`` (median wall time of 5 subprocesses).

Each timed figure is the best of ``--rounds`` interleaved runs (the machine is shared); the
CPU time of the stage (every thread of the process) against the baseline's is printed too,
as it is far less disturbed than wall time by other work on a busy machine.
The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _synth import cached_synthetic_slide  # noqa: E402

from pathgen.slides import TilingParams, tile_slide  # noqa: E402
from pathgen.slides.reader import RESAMPLE  # noqa: E402

STAGE_SLIDES = 6
STAGE_SIZE, STAGE_MPP = (16000, 12000), 0.5
PATCH = 336


def clam_style(path: Path, patch: int) -> int:
    """A minimal CLAM-style segmentation and patch grid; returns the number of patches."""
    import openslide

    slide = openslide.OpenSlide(str(path))
    level = slide.get_best_level_for_downsample(64)
    rgba = np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))
    sat = cv2.medianBlur(cv2.cvtColor(rgba, cv2.COLOR_RGB2HSV)[..., 1], 7)
    _, mask = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((4, 4), np.uint8))
    ds = slide.level_downsamples[level]
    width, height = slide.dimensions
    xs = np.arange(0, width - patch + 1, patch)
    ys = np.arange(0, height - patch + 1, patch)
    cx = np.minimum(((xs + patch / 2) / ds).astype(int), mask.shape[1] - 1)
    cy = np.minimum(((ys + patch / 2) / ds).astype(int), mask.shape[0] - 1)
    keep = mask[cy[:, None], cx[None, :]] > 0
    coords = np.stack([xs[np.nonzero(keep)[1]], ys[np.nonzero(keep)[0]]], axis=1)
    slide.close()
    return len(coords)


def baseline(paths: list[Path]) -> tuple[float, float, int]:
    """Wall and CPU seconds of the CLAM-style pipeline over ``paths``, and its patches."""
    start, cpu = time.perf_counter(), time.process_time()
    patches = sum(clam_style(p, PATCH) for p in paths)
    return time.perf_counter() - start, time.process_time() - cpu, patches


async def _stage(paths: list[Path], folder: Path, workers: int) -> tuple[float, float, int]:
    """Wall and CPU seconds (every thread of the process) of the worker that tiles
    ``paths`` (database prepared beforehand), and the tiles it stored."""
    from sqlalchemy import func, select

    from pathgen.runs import registry
    from pathgen.runs.manifest import SlideEntry
    from pathgen.runs.pipeline import build_handlers, open_store
    from pathgen.runs.resources import RunResources
    from pathgen.runs.worker import Worker
    from pathgen.settings import Settings
    from pathgen.store.engine import session_scope
    from pathgen.store.models import Slide

    db = folder / f"stage-{workers}.db"
    db.unlink(missing_ok=True)
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite+aiosqlite:///{db}"},
            "run": {"data_dir": str(folder / "data")},
            "tiling": {"workers": workers},
        }
    )
    engine = await open_store(settings)
    res = RunResources(settings, engine)
    try:
        await registry.ensure_run(engine, "bench", settings)
        await registry.add_slides(
            engine, "bench", [SlideEntry(str(p)) for p in paths], max_attempts=1
        )
        worker = Worker(engine, build_handlers(res, ["tile"]), run_id="bench", exit_when_idle=True)
        start, cpu = time.perf_counter(), time.process_time()
        stats = await worker.run()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        async with session_scope(engine) as session:
            tiles = await session.scalar(select(func.sum(Slide.tile_count)))
            tiled = await session.scalar(
                select(func.count()).select_from(Slide).where(Slide.status == "tiled")
            )
        if stats.done != len(paths) or tiled != len(paths):
            raise SystemExit(f"tile stage: {stats}, {tiled} of {len(paths)} slides tiled")
        return seconds, cpu, int(tiles or 0)
    finally:
        await res.aclose()
        await engine.dispose()


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


def read_pass(path: Path, params: TilingParams, threads: int) -> tuple[float, int]:
    """Seconds and kept tiles of ``tile_slide`` reading every kept tile with ``threads``."""
    start = time.perf_counter()
    result = tile_slide(path, params, threads=threads, verify=True)
    return time.perf_counter() - start, len(result.tiles)


def cold_start(runs: int = 5) -> float:
    """Median wall seconds of ``pathgen tile --help`` in a new process."""
    exe = shutil.which("pathgen", path=str(Path(sys.executable).parent)) or "pathgen"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([exe, "tile", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="40000x30000", help="WIDTHxHEIGHT, read-pass slide")
    parser.add_argument("--mpp", type=float, default=0.25, help="read-pass slide µm/px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=Path("bench-cache"))
    args = parser.parse_args()
    cache = args.cache_dir
    stage_paths = [
        cached_synthetic_slide(*STAGE_SIZE, STAGE_MPP, seed, cache) for seed in range(STAGE_SLIDES)
    ]
    width, height = (int(v) for v in args.size.lower().split("x"))
    big = cached_synthetic_slide(width, height, args.mpp, args.seed, cache)
    params = TilingParams(mpp=0.5, tile_size=PATCH)

    warm = tile_slide(big, params, threads=2, verify=True)  # page cache warm, grid
    tiles, n = warm.tiles, len(warm.tiles)
    print(f"read pass: {big.name}, {n} tiles, read level {tiles[0].read_level}", flush=True)
    keys = ("clam", "stage_1", "stage_2", "clam_cpu", "stage_1_cpu", "plain", "1w", "2w")
    best = dict.fromkeys(keys, float("inf"))
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tiling-") as tmp:
        for r in range(args.rounds):
            secs, cpu, counts["clam"] = baseline(stage_paths)
            best["clam"], best["clam_cpu"] = min(best["clam"], secs), min(best["clam_cpu"], cpu)
            for workers in (1, 2):
                secs, cpu, counts["stage"] = asyncio.run(_stage(stage_paths, Path(tmp), workers))
                best[f"stage_{workers}"] = min(best[f"stage_{workers}"], secs)
                if workers == 1:
                    best["stage_1_cpu"] = min(best["stage_1_cpu"], cpu)
            best["plain"] = min(best["plain"], plain_loop(big, tiles))
            for key, threads in (("1w", 1), ("2w", 2)):
                secs, kept = read_pass(big, params, threads)
                if kept != n:
                    raise SystemExit(f"read pass kept {kept} tiles, expected {n}")
                best[key] = min(best[key], secs)
            per = {k: 1000 * best[k] / STAGE_SLIDES for k in keys[:5]}
            print(
                f"round {r + 1}: per slide CLAM-style {per['clam']:.1f} ms "
                f"(CPU {per['clam_cpu']:.1f}), stage {per['stage_1']:.1f} ms "
                f"(CPU {per['stage_1_cpu']:.1f}) 1 at a time, {per['stage_2']:.1f} ms 2; "
                f"reads plain {n / best['plain']:.0f}, 1w {n / best['1w']:.0f}, "
                f"2w {n / best['2w']:.0f} tiles/s",
                flush=True,
            )
    cli_s = cold_start()
    load = os.getloadavg()
    summary = {
        "bench": "tiling",
        "stage_slides": f"{STAGE_SLIDES}x {STAGE_SIZE[0]}x{STAGE_SIZE[1]}@{STAGE_MPP}",
        "clam_style_ms_per_slide": round(1000 * best["clam"] / STAGE_SLIDES, 1),
        "clam_style_patches": counts["clam"],
        "stage_ms_per_slide": round(1000 * best["stage_1"] / STAGE_SLIDES, 1),
        "stage_2_at_a_time_ms_per_slide": round(1000 * best["stage_2"] / STAGE_SLIDES, 1),
        "stage_tiles": counts["stage"],
        "stage_vs_clam": round(best["stage_1"] / best["clam"], 3),
        "goal_stage_vs_clam": 1.2,
        "stage_vs_clam_cpu": round(best["stage_1_cpu"] / best["clam_cpu"], 3),
        "stage_2_at_a_time_vs_clam": round(best["stage_2"] / best["clam"], 3),
        "cli_tile_help_s": round(cli_s, 3),
        "goal_cli_tile_help_s": 0.6,
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
