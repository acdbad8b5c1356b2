"""Queue throughput: claims + completions per second with 8 concurrent workers.

Each worker claims a batch, then completes it (one transaction per batch, with the
lease fencing check per item), until the queue is empty. Measured on SQLite (a temp
file) and on Postgres (``PATHGEN_BENCH_POSTGRES_URL`` or ``PATHGEN_TEST_POSTGRES_URL``,
default the local server), each in a database of its own.

    python benchmarks/bench_queue.py [--items 20000] [--workers 8] [--batch 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathgen.runs import queue  # noqa: E402
from pathgen.runs.queue import Completion, NewWork  # noqa: E402
from pathgen.store import migrate  # noqa: E402
from pathgen.store.engine import make_engine, session_scope  # noqa: E402
from pathgen.store.models import Run  # noqa: E402
from tests.dbutil import postgres_database  # noqa: E402

GOAL_POSTGRES = 1000.0


async def _measure(url: str, items: int, workers: int, batch: int) -> float:
    engine = make_engine(url, pool_size=workers + 2)
    await migrate.upgrade(engine)
    async with session_scope(engine) as s:
        s.add(Run(id="bench", config={}, pathgen_version="bench"))
        await s.flush()
        for start in range(0, items, 5000):
            work = [NewWork("describe", f"k{i}") for i in range(start, min(items, start + 5000))]
            await queue.enqueue(s, "bench", work)
    done = 0

    async def worker(name: str) -> None:
        nonlocal done
        while claimed := await queue.claim(
            engine, owner=name, stages=["describe"], limit=batch, run_id="bench"
        ):
            ok = await queue.complete(engine, [Completion(c) for c in claimed])
            done += sum(ok)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(f"w{i}") for i in range(workers)))
    elapsed = time.perf_counter() - t0
    counts = await queue.counts(engine, "bench")
    await engine.dispose()
    assert counts == {"describe": {"done": items}}, counts
    assert done == items
    return items / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate = await _measure(
            f"sqlite+aiosqlite:///{tmp}/q.db", args.items, args.workers, args.batch
        )
    print(f"sqlite: {sqlite_rate:,.0f} claims+completions/s")

    os.environ.setdefault(
        "PATHGEN_TEST_POSTGRES_URL",
        os.environ.get(
            "PATHGEN_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    async with postgres_database() as url:
        pg_rate = await _measure(url, args.items, args.workers, args.batch)
    print(f"postgres: {pg_rate:,.0f} claims+completions/s")
    print(
        json.dumps(
            {
                "bench": "queue",
                "workers": args.workers,
                "items": args.items,
                "sqlite_per_s": round(sqlite_rate, 1),
                "postgres_per_s": round(pg_rate, 1),
                "goal_postgres_per_s": GOAL_POSTGRES,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
