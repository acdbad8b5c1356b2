"""The progress table and ``pathgen status`` show what the provider's server sees.

A worker runs describe-like items through the real client (official SDK, ResilientClient)
against pathgen.testing's server; while it works, the run's snapshot (what the progress
table and ``pathgen status`` print) is compared with the server's own counters: the calls
in flight the worker reports (its beats) vs requests in flight, items done per second vs
requests per second.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.llm.base import ChatRequest, Message
from pathgen.llm.factory import make_client
from pathgen.runs import queue
from pathgen.runs.progress import snapshot
from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.worker import StageHandler, Worker
from pathgen.settings import StageSettings
from pathgen.store.engine import session_scope
from pathgen.store.models import Run
from pathgen.testing.llm_server import run_mock_server

LIMIT = 24
WINDOW_S = 3.0


async def test_status_rate_and_in_flight_match_the_server(engine: AsyncEngine) -> None:
    async with session_scope(engine) as s:
        s.add(Run(id="r", config={}, pathgen_version="test", status="running"))
        await s.flush()
        await queue.enqueue(s, "r", [NewWork("describe", str(i)) for i in range(240)])
    with run_mock_server(latency=1.0, jitter=0.5, keep_bodies=False, process=True) as srv:
        cfg = StageSettings(
            provider="openai",
            model="m",
            base_url=srv.base_url,
            api_key_env="",
            max_concurrency=LIMIT,
        )
        client = make_client(cfg)

        async def handle(item: Claimed, _inputs: object) -> Completion:
            request = ChatRequest((Message("user", f"describe tile {item.key}"),), model="m")
            await client.complete(request)
            return Completion(item)

        worker = Worker(
            engine,
            [StageHandler("describe", LIMIT, handle)],
            run_id="r",
            exit_when_idle=True,
            calls=lambda: {("r", "describe"): client.in_flight},
        )
        task = asyncio.create_task(worker.run())
        history: list[dict[str, float]] = []
        shown: list[tuple[float, float]] = []
        server: list[tuple[float, float]] = []
        try:
            while not task.done():
                stats = await asyncio.to_thread(srv.stats)
                history.append(stats)
                progress = await snapshot(engine, "r", window_s=WINDOW_S)
                stage = next(s for s in progress.stages if s.stage == "describe")
                back = [h for h in history if stats["t"] - h["t"] >= WINDOW_S]
                steady = stats["t"] - history[0]["t"] >= WINDOW_S + 1.5  # first answers in
                if back and steady and stage.queued > LIMIT:
                    rate = (stats["count"] - back[-1]["count"]) / (stats["t"] - back[-1]["t"])
                    assert stage.calls_in_flight is not None  # the worker's beat
                    shown.append((stage.calls_in_flight, stage.rate_per_s or 0.0))
                    server.append((stats["in_flight"], rate))
                await asyncio.sleep(0.5)
            stats = await task
        finally:
            await client.aclose()
    assert stats.done == 240 and len(shown) >= 3
    mean = [sum(v) / len(v) for v in zip(*shown, strict=True)]
    seen = [sum(v) / len(v) for v in zip(*server, strict=True)]
    # In flight: what is shown is the worker's count at its last beat (up to ~1 s old, and
    # a beat waits for the database like every writer), sampled at other moments than the
    # server's count: 10 % on a quiet machine (bench_pipeline), 25 % here under a test
    # suite's load; items leased read about 2x when the worker is busy.
    assert abs(mean[0] / seen[0] - 1) <= 0.25, (mean, seen)
    assert abs(mean[1] / seen[1] - 1) <= 0.10, (mean, seen)  # calls per second
