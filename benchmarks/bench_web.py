"""Curation page times at 10k / 100k / 1.6M captioned tiles, SQLite and Postgres.

Rows are made in bulk SQL through the shipped schema and its triggers (tiles on 2,000-tile
slides, a selection score per tile, ``--revisions`` caption revisions per tile, one
finished work item per revision, 30% of tiles reviewed by four curators). Then the app
that ``pathgen serve`` runs answers, in process: the dashboard, grid page 1, the grid's
last page and a filtered page (unreviewed tiles of one organ, by CLIP score). Each
figure is the median of ``--repeat`` requests after one warm-up, the sizes taking turns
request by request (so a busy machine slows them alike).

Goals: every page ≤ 300 ms at the largest size, and largest/smallest ≤ 2 for each page.

    python benchmarks/bench_web.py [--sizes 10000,100000,1600000] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from pathgen.settings import DatabaseSettings, Settings  # noqa: E402
from pathgen.store import migrate  # noqa: E402
from pathgen.store.engine import make_engine  # noqa: E402
from pathgen.web import create_app  # noqa: E402
from tests.dbutil import postgres_database  # noqa: E402

GOAL_MS = 300.0
GOAL_RATIO = 2.0
PER_SLIDE = 2000
ORGANS = ("breast", "lung", "colon", "prostate", "skin")
RUN = "bench"
PAGES = {
    "dashboard": "/",
    "grid_first": f"/runs/{RUN}",
    "grid_last": f"/runs/{RUN}?last=1",
    "filtered": f"/runs/{RUN}?review=unreviewed&organ=lung&sort=-score",
}


def _seq(dialect: str, n: int) -> str:
    if dialect == "sqlite":
        return (
            f"(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1})"
            " SELECT i FROM s) seq"
        )
    return f"generate_series(0, {n - 1}) AS seq(i)"


def _cases(values: tuple[str, ...]) -> str:
    return " ".join(f"WHEN {k} THEN '{v}'" for k, v in enumerate(values))


def _statements(dialect: str, n: int, revisions: int) -> list[str]:
    """Bulk inserts for ``n`` captioned tiles (ids 1..n) with ``revisions`` each."""
    slides = -(-n // PER_SLIDE)
    json_obj = "'{}'" if dialect == "sqlite" else "'{}'::json"
    json_list = "'[]'" if dialect == "sqlite" else "'[]'::json"
    now = "CURRENT_TIMESTAMP"
    stages = ["describe", "revise", "revise2", "revise3", "summarize"][-revisions:]
    out = [
        f"""INSERT INTO runs (id, config, status, pathgen_version, created_at, updated_at)
        VALUES ('{RUN}', {json_obj}, 'completed', 'bench', {now}, {now})""",
        f"""INSERT INTO slides (id, path, status, tile_count, width, height, created_at, updated_at)
        SELECT i + 1, '/bench/slide-' || CAST(i AS VARCHAR(12)) || '.svs', 'done', {PER_SLIDE},
            {PER_SLIDE * 224}, 224, {now}, {now} FROM {_seq(dialect, slides)}""",
        f"""INSERT INTO run_slides (run_id, slide_id, organ, label)
        SELECT '{RUN}', i + 1, CASE i % 5 {_cases(ORGANS)} END,
            CASE i % 2 WHEN 0 THEN 'tumour' ELSE 'normal' END FROM {_seq(dialect, slides)}""",
        f"""INSERT INTO tiles (id, slide_id, x, y, size, read_level, mpp, tile_px, tissue_fraction)
        SELECT i + 1, i / {PER_SLIDE} + 1, (i % {PER_SLIDE}) * 224, 0, 224, 0, 0.5, 224, 0.9
        FROM {_seq(dialect, n)}""",
        f"""INSERT INTO selections (id, run_id, round, tile_id, kept, reasons, score)
        SELECT i + 1, '{RUN}', 0, i + 1, TRUE, {json_list}, (i % 997) / 997.0
        FROM {_seq(dialect, n)}""",
    ]
    for k, stage in enumerate(stages):
        parent = "NULL" if k == 0 else f"i + 1 + {(k - 1) * n}"
        out.append(
            f"""INSERT INTO caption_revisions (id, tile_id, run_id, stage, parent_id, branch, text,
                provider, model, params, input_tokens, output_tokens, latency_s, cost, status,
                created_at)
            SELECT i + 1 + {k * n}, i + 1, '{RUN}', '{stage}', {parent}, 'caption',
                'Sheets of atypical cells with mitoses, {stage} of tile ' || CAST(i AS VARCHAR(12)),
                'offline', 'bench-model', {json_obj}, 500, 80, 0.1, 0.0001, 'ok', {now}
            FROM {_seq(dialect, n)}"""
        )
        out.append(
            f"""INSERT INTO work_items (run_id, stage, key, payload, status, attempts,
                max_attempts, available_at, created_at, updated_at, done_at)
            SELECT '{RUN}', '{stage}', 'tile:' || CAST(i + 1 AS VARCHAR(12)), {json_obj}, 'done',
                1, 3, {now}, {now}, {now}, {now}
            FROM {_seq(dialect, n)}"""
        )
    last = (len(stages) - 1) * n
    out.append(
        f"""INSERT INTO reviews (run_id, tile_id, revision_id, decision, reviewer, created_at)
        SELECT '{RUN}', i + 1, i + 1 + {last},
            CASE i % 3 WHEN 0 THEN 'accept' WHEN 1 THEN 'edit' ELSE 'reject' END,
            'curator' || CAST(i % 4 AS VARCHAR(2)), {now}
        FROM {_seq(dialect, n)} WHERE i % 10 < 3"""
    )
    if dialect == "postgresql":
        for table in ("slides", "tiles", "selections", "caption_revisions"):
            out.append(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n * 10})")
    return out


async def _generate(url: str, n: int, revisions: int) -> float:
    engine = make_engine(url)
    t0 = time.perf_counter()
    try:
        await migrate.upgrade(engine)
        dialect = engine.dialect.name
        async with engine.begin() as conn:
            for statement in _statements(dialect, n, revisions):
                await conn.execute(text(statement))
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    finally:
        await engine.dispose()
    return time.perf_counter() - t0


def _time_pages(urls: dict[int, str], repeat: int) -> dict[int, dict[str, float]]:
    """Median ms per page and size; sizes interleaved in each round so that load on the
    machine weighs on all of them alike."""
    apps = {
        n: create_app(Settings(database=DatabaseSettings(url=u)), reviewer="b")
        for n, u in urls.items()
    }
    times: dict[int, dict[str, list[float]]] = {n: {p: [] for p in PAGES} for n in urls}
    with ExitStack() as stack:
        clients = {
            n: stack.enter_context(TestClient(app, base_url="http://127.0.0.1"))
            for n, app in apps.items()
        }
        for round_ in range(repeat + 1):
            for name, path in PAGES.items():
                for n, client in clients.items():
                    t0 = time.perf_counter()
                    r = client.get(path)
                    elapsed = time.perf_counter() - t0
                    assert r.status_code == 200 and "<html" in r.text, (n, path, r.status_code)
                    if round_:  # the first round warms up
                        times[n][name].append(elapsed)
    return {
        n: {p: round(1000 * statistics.median(v), 1) for p, v in by.items()}
        for n, by in times.items()
    }


async def _backend(backend: str, sizes: list[int], tmp: str) -> dict[int, dict[str, float]]:
    async with AsyncExitStack() as stack:
        urls = {}
        for n in sizes:
            if backend == "sqlite":
                urls[n] = f"sqlite+aiosqlite:///{tmp}/web-{n}.db"
            else:
                urls[n] = await stack.enter_async_context(postgres_database())
            gen = await _generate(urls[n], n, ARGS.revisions)
            print(f"{backend}: {n:,} captioned tiles made in {gen:.0f} s", flush=True)
        return await asyncio.to_thread(_time_pages, urls, ARGS.repeat)


async def main() -> None:
    sizes = sorted(int(s) for s in ARGS.sizes.split(","))
    backends = ARGS.backends.split(",")
    os.environ.setdefault(
        "PATHGEN_TEST_POSTGRES_URL",
        os.environ.get(
            "PATHGEN_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    result: dict[str, object] = {"bench": "web", "revisions_per_tile": ARGS.revisions}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            by_size = await _backend(backend, sizes, tmp)
            for n, pages in by_size.items():
                print(f"{backend} {n:>9,} tiles: {pages}", flush=True)
            small, large = by_size[sizes[0]], by_size[sizes[-1]]
            ratios = {p: round(large[p] / max(small[p], 0.1), 2) for p in PAGES}
            ok = ok and all(v <= GOAL_MS for v in large.values())
            ok = ok and all(v <= GOAL_RATIO for v in ratios.values())
            result[backend] = {"ms": {str(k): v for k, v in by_size.items()}, "ratio": ratios}
    result |= {"goal_ms_at_largest": GOAL_MS, "goal_ratio": GOAL_RATIO, "goals_met": ok}
    print(json.dumps(result))


parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--sizes", default="10000,100000,1600000")
parser.add_argument("--backends", default="sqlite,postgres")
parser.add_argument("--revisions", type=int, default=2, choices=range(1, 6))
parser.add_argument("--repeat", type=int, default=9)

if __name__ == "__main__":
    ARGS = parser.parse_args()
    asyncio.run(main())
