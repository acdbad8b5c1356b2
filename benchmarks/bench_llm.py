"""LLM provider throughput, client CPU per request, and the RPM limit at the server.

Against the mock server in its own process (1 s mean latency, +-10 % jitter), each
provider runs with 256 requests in flight; every result is persisted to SQLite through
the store's ``RevisionWriter`` as it arrives. Reported per provider:

* ratio: steady-state completions/s (from the 256th to the (n-256)th completion, so
  ramp-up and ramp-down are excluded) / ideal 256/s;
* cpu_ms: ``time.process_time()`` of this (client) process per request, which includes
  building requests, base64 of a 336 px JPEG tile, the SDK, retries wrapper and
  the SQLite persistence.

RPM: a client limited to 600 requests/minute sends 700 requests; the server's arrival
timestamps give the largest count in any 60 s sliding window (``--quick`` uses a 6 s
window with a limit of 60, the same rate, to finish in seconds).

Run: ``.venv/bin/python benchmarks/bench_llm.py [--quick]``; last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import io
import json
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter
from sqlalchemy import insert

from pathgen.errors import LLMError
from pathgen.llm.base import ChatRequest, ChatResult, ImagePart, LLMClient, Message
from pathgen.llm.engine import run_requests
from pathgen.llm.factory import make_client
from pathgen.llm.images import encode_image
from pathgen.llm.ratelimit import RateLimiter
from pathgen.llm.resilient import ResilientClient
from pathgen.settings import StageSettings
from pathgen.store import migrate
from pathgen.store.engine import make_engine
from pathgen.store.models import Run, Slide, Tile
from pathgen.store.revisions import NewRevision, RevisionWriter
from pathgen.testing.llm_server import run_mock_server

IN_FLIGHT = 256
LATENCY_S = 1.0
RUN_ID = "bench-llm"


def _tile() -> ImagePart:
    # Blurred colour noise: compresses like an H&E tile (about 26 KB at 336 px, q90).
    bands = [
        Image.effect_noise((336, 336), s).filter(ImageFilter.GaussianBlur(1.2))
        for s in (30, 40, 50)
    ]
    image = Image.merge("RGB", bands)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return encode_image(buf.getvalue(), max_side=336)


async def _setup_db(path: Path, n_tiles: int):
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(insert(Run), [{"id": RUN_ID, "config": {}, "pathgen_version": "b"}])
        await conn.execute(insert(Slide), [{"id": 1, "path": "bench.svs"}])
        rows = [
            {
                "id": i,
                "slide_id": 1,
                "x": i,
                "y": 0,
                "size": 336,
                "read_level": 0,
                "mpp": 0.5,
                "tile_px": 336,
                "tissue_fraction": 1.0,
            }
            for i in range(1, n_tiles + 1)
        ]
        await conn.execute(insert(Tile), rows)
    return engine


async def _run(
    client: LLMClient, engine, tile_ids: range, image: ImagePart, stage: str
) -> dict[str, float]:
    done_at: list[float] = []
    failures: list[str] = []

    def build(tile_id: int) -> ChatRequest:
        text = f"Describe tile {tile_id} of slide bench.svs as a pathologist would."
        return ChatRequest(
            messages=(Message("system", "You are a pathologist."), Message("user", text, (image,))),
            model="mock-vlm",
            max_tokens=256,
        )

    async with RevisionWriter(engine, batch_size=128) as writer:

        async def on_result(tile_id: int, result: ChatResult) -> None:
            await writer.add(
                NewRevision(
                    tile_id=tile_id,
                    run_id=RUN_ID,
                    stage=stage,
                    text=result.text,
                    provider=result.provider,
                    model=result.model,
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                    latency_s=result.latency_s,
                )
            )
            done_at.append(time.monotonic())

        async def on_error(tile_id: int, err: LLMError) -> None:
            failures.append(f"{tile_id}: {err}")

        cpu0 = time.process_time()
        await run_requests(
            tile_ids, build, client, on_result=on_result, on_error=on_error, max_in_flight=IN_FLIGHT
        )
        cpu = time.process_time() - cpu0
        written = writer.written
    await writer.aclose()
    written = writer.written
    n = len(tile_ids)
    # Steady state: from the IN_FLIGHT-th completion (end of ramp-up) to the
    # (n - IN_FLIGHT)-th (start of ramp-down): whole waves, so lumpy waves do not bias it.
    first, last = done_at[IN_FLIGHT - 1], done_at[len(done_at) - IN_FLIGHT - 1]
    rate = (len(done_at) - 2 * IN_FLIGHT) / (last - first)
    return {
        "ratio": round(rate / (IN_FLIGHT / LATENCY_S), 3),
        "cpu_ms": round(cpu / n * 1000, 2),
        "requests": n,
        "persisted": written,
        "failed": len(failures),
        "steady_rps": round(rate, 1),
    }


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


async def _rpm(base_url: str, limit: int, window_s: float, n: int) -> dict[str, float]:
    inner = make_client(
        StageSettings(provider="openai", model="mock-vlm", base_url=base_url, timeout_s=30)
    )
    assert isinstance(inner, ResilientClient)
    client = ResilientClient(
        inner.inner,
        max_concurrency=IN_FLIGHT,
        limiter=RateLimiter(requests_per_minute=limit, window_s=window_s),
    )
    request = ChatRequest(messages=(Message("user", "rate limited"),), model="mock-vlm")
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with sem:
            await client.complete(request)

    t0 = time.monotonic()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(n):
                group.create_task(one())
    finally:
        await client.aclose()
    return {"elapsed_s": round(time.monotonic() - t0, 1)}


async def _providers(srv, args, tmp: Path) -> dict[str, dict[str, float]]:
    image = _tile()
    counts = {"openai": args.openai_requests, "mistral": args.mistral_requests}
    engine = await _setup_db(tmp / "bench.db", sum(counts.values()))
    out = {}
    first = 1
    try:
        for provider, n in counts.items():
            stage = StageSettings(
                provider=provider,
                model="mock-vlm",
                base_url=srv.base_url,
                max_concurrency=IN_FLIGHT,
                timeout_s=30,
            )
            client = make_client(stage)
            try:
                out[provider] = await _run(client, engine, range(first, first + n), image, provider)
            finally:
                await client.aclose()
            first += n
            print(provider, out[provider], flush=True)
    finally:
        await engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="RPM check with a 6 s window")
    parser.add_argument("--openai-requests", type=int, default=3072)
    parser.add_argument("--mistral-requests", type=int, default=1536)
    args = parser.parse_args()
    window = 6.0 if args.quick else 60.0
    rpm_limit = 600
    limit_in_window = int(rpm_limit * window / 60)
    with tempfile.TemporaryDirectory() as tmp:
        with run_mock_server(latency=LATENCY_S, jitter=0.1, process=True, keep_bodies=False) as srv:
            results = asyncio.run(_providers(srv, args, Path(tmp)))
        with run_mock_server(latency=0.2, process=True, keep_bodies=False) as srv:
            rpm = asyncio.run(_rpm(srv.base_url, limit_in_window, window, limit_in_window + 100))
            times = [r.t for r in srv.requests(bodies=False)]
    rpm_max = _max_in_window(times, window)
    print(
        f"rpm: {len(times)} requests in {rpm['elapsed_s']} s, window {window:g} s, "
        f"limit {limit_in_window}, max in any window {rpm_max}",
        flush=True,
    )
    print(
        json.dumps(
            {
                "bench": "llm",
                "openai_ratio": results["openai"]["ratio"],
                "openai_cpu_ms": results["openai"]["cpu_ms"],
                "mistral_ratio": results["mistral"]["ratio"],
                "mistral_cpu_ms": results["mistral"]["cpu_ms"],
                "persisted": results["openai"]["persisted"] + results["mistral"]["persisted"],
                "rpm_limit": rpm_limit,
                "rpm_window_s": window,
                "rpm_limit_in_window": limit_in_window,
                "rpm_max_window": rpm_max,
                "goal_ratio": 0.9,
                "goal_cpu_ms": 2.0,
            }
        )
    )


if __name__ == "__main__":
    main()
