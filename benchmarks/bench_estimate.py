"""Speed of ``pathgen estimate`` (pathgen.runs.estimate.estimate_run) for a big manifest.

A SQLite database (a temp file) holds ``--slides`` slides already tiled, ``--tiles``
tiles each; half the slides have a report file. The estimate reads the manifest and the
reports, counts the stored tiles per slide and renders each stage's template: timed from
reading the manifest to the finished estimate (what the command does, less printing).
Goal: under 5 s for 1,000 slides. ``manifest_read_s`` (reading the manifest alone) is the
baseline in the same run.

    python benchmarks/bench_estimate.py [--slides 1000] [--tiles 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from pathgen.runs.estimate import estimate_run
from pathgen.runs.manifest import read_manifest
from pathgen.settings import Settings
from pathgen.store import migrate
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import Slide, Tile

GOAL_S = 5.0
STAGE = {"provider": "openai", "model": "gpt-4o", "price_input_per_1k": 0.0025}


async def main(slides: int, tiles: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engine = make_engine(f"sqlite+aiosqlite:///{root / 'bench.db'}")
        await migrate.upgrade(engine)
        rows = ["path,report"]
        for i in range(slides):
            report = ""
            if i % 2 == 0:
                report = f"r{i}.txt"
                (root / report).write_text("Invasive ductal carcinoma, grade 2. " * 20)
            rows.append(f"s{i}.svs,{report}")
        (root / "m.csv").write_text("\n".join(rows) + "\n")
        async with session_scope(engine) as s:
            ids = (
                await s.execute(
                    insert(Slide).returning(Slide.id),
                    [{"path": str(root / f"s{i}.svs"), "status": "done"} for i in range(slides)],
                )
            ).scalars()
            tile_rows = [
                {
                    "slide_id": sid,
                    "x": t,
                    "y": 0,
                    "size": 672,
                    "read_level": 0,
                    "mpp": 0.5,
                    "tile_px": 336,
                    "tissue_fraction": 1.0,
                }
                for sid in ids
                for t in range(tiles)
            ]
            for start in range(0, len(tile_rows), 20_000):
                await s.execute(insert(Tile), tile_rows[start : start + 20_000])
        settings = Settings.model_validate(
            {"captioning": {"describe": STAGE, "revise": STAGE, "summarize": STAGE}}
        )
        t0 = time.perf_counter()
        entries = read_manifest(root / "m.csv")
        t1 = time.perf_counter()
        est = await estimate_run(engine, settings, entries, "bench")
        t2 = time.perf_counter()
        await engine.dispose()
    return {
        "bench": "estimate",
        "slides": slides,
        "tiles_stored": slides * tiles,
        "basis": est.basis,
        "tiles_to_caption": est.tiles,
        "calls": sum(s.calls for s in est.stages),
        "manifest_read_s": round(t1 - t0, 3),
        "estimate_s": round(t2 - t0, 3),
        "goal_s": GOAL_S,
        "meets_goal": (t2 - t0) < GOAL_S,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=1000)
    parser.add_argument("--tiles", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.slides, args.tiles))))
