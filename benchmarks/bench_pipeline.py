"""LLM throughput of the shipped pipeline: ``run_pipeline`` on the caption stages.

What runs is what ``pathgen run`` runs: the worker, the queue, the stage handlers, tile
reads, image encoding, template rendering, the provider clients (official SDKs) and the
revision writes, against :mod:`pathgen.testing`'s server in its own process (1 s mean
latency, uniform 0.5-1.5 s). Before timing, the earlier stages' output is inserted
directly: ``--tiles`` selected tiles, in grid order as the tiler makes them, on synthetic
slides of 16000×12000 px at 0.5 µm/px (1,645 tiles each; written once and cached), with
the demo's tiny CLIP (tile, embed and select items done, describe items queued). Then
describe → degrade (rules) → revise (the description and the degraded copy) → summarize
run with ``max_concurrency`` 256 on each LLM stage: 4 calls per tile. A second timed
phase redoes summarize alone (``--redo summarize --force``): text-only calls.

Printed per case (database × provider):

* ``describe_ratio``: steady-state describe calls/s at the server (arrivals between its
  10th and 90th percentile) ÷ (256 / mean latency);
* ``inflight_ratio``: mean over 0.5 s samples of the requests in flight at the server ÷
  the limits of the LLM stages that had work waiting (each stage counts
  ``min(limit, queued + leased)``);
* ``cpu_ms_per_call``: this process's CPU (user + system) over the caption phase ÷ calls;
  ``text_cpu_ms_per_call`` the same for the text-only phase;
* ``rss_growth``: RSS at the end of the caption phase ÷ RSS after 2,000 calls − 1;
  ``peak_rss_mb`` (sampled); RSS and CPU include the caption processes ``pathgen run``
  starts (``workers.caption_processes``);
* ``exactly_once``: every call made one revision and every item is done (counted);
* ``status_in_flight_ratio``, ``status_rate_ratio``: what the progress table and
  ``pathgen status`` show for the LLM stages (the calls in flight the workers report;
  items done per second over 5 s) ÷ what the server counts (requests in flight, both
  averaged over the phase; requests per second over 5 s).

``--processes`` sets ``workers.caption_processes`` (default ``auto``: two on two cores).

The last line is one JSON object with every case's figures and the goals.

    python benchmarks/bench_pipeline.py [--tiles 2600] [--cases sqlite:openai,...]

``PATHGEN_BENCH_TILES`` sets the default tile count; Postgres comes from
``PATHGEN_TEST_POSTGRES_URL`` (default the local server), one new database per case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, update  # noqa: E402

from benchmarks._synth import cached_synthetic_slide  # noqa: E402
from pathgen.runs import queue, registry  # noqa: E402
from pathgen.runs.caption_processes import ENTRY  # noqa: E402
from pathgen.runs.demo import prepare_demo  # noqa: E402
from pathgen.runs.manifest import read_manifest  # noqa: E402
from pathgen.runs.pipeline import open_store, run_pipeline  # noqa: E402
from pathgen.runs.progress import snapshot  # noqa: E402
from pathgen.runs.queue import NewWork  # noqa: E402
from pathgen.settings import load_settings  # noqa: E402
from pathgen.store.engine import make_engine, session_scope  # noqa: E402
from pathgen.store.models import CaptionRevision, Selection, Slide, Tile, WorkItem  # noqa: E402
from pathgen.testing.llm_server import run_mock_server  # noqa: E402
from pathgen.workers.signals import run_until_signalled  # noqa: E402
from tests.dbutil import postgres_database  # noqa: E402

LIMIT = 256
#: ``workers.caption_processes`` of the measured runs (``--processes``).
PROCESSES: list[int | str] = ["auto"]
#: The rate window of the figures `pathgen status` shows, compared with the server's.
STATUS_WINDOW_S = 5.0
LATENCY = 1.0
RUN = "bench"
LLM_STAGES = ("describe", "revise", "summarize")
CAPTION = ("describe", "degrade", "revise", "summarize")
GOALS = {
    "describe_ratio": 0.85,
    "inflight_ratio": 0.85,
    "cpu_ms_per_call": 3.0,
    "text_cpu_ms_per_call": 2.0,
    "rss_growth": 0.10,
    "exactly_once": True,
}


def _cpu_s() -> float:
    """CPU of the client: this process and the caption processes it started and waited for
    (the server runs in a child process that is waited for only after the case)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def _helpers() -> list[int]:
    """Pids of the caption processes ``pathgen run`` started here."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if ENTRY.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def _rss_mb() -> float:
    """RSS of the client: this process and its caption processes."""
    total = 0
    for pid in ["self", *_helpers()]:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/statm") as f:
            total += int(f.read().split()[1])
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


SLIDE_W, SLIDE_H, SLIDE_MPP = 16000, 12000, 0.5


def _slides(n_tiles: int, demo: Path, work: Path) -> Path:
    """A manifest of enough synthetic slides for ``n_tiles`` grid tiles (the first with a
    report)."""
    per_slide = (SLIDE_W // 336) * (SLIDE_H // 336)
    rows = ["path,mpp,report,label,organ"]
    for i in range(-(-n_tiles // per_slide)):
        path = cached_synthetic_slide(SLIDE_W, SLIDE_H, mpp=SLIDE_MPP, seed=i + 1)
        report = demo / "slides" / "report-1.txt" if i == 0 else ""
        rows.append(f"{path},,{report},tumour,breast")
    manifest = work / "slides.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _config(
    demo: Path, work: Path, db_url: str, provider: str, base_url: str, n_tiles: int
) -> Path:
    text = (demo / "pathgen.toml").read_text()
    text = text.replace(f'url = "sqlite+aiosqlite:///{demo / "pathgen.db"}"', f'url = "{db_url}"')
    text = text.replace(f'data_dir = "{demo / "data"}"', f'data_dir = "{work / "data"}"')
    text = text.replace(
        f'manifest = "{demo / "slides.csv"}"', f'manifest = "{_slides(n_tiles, demo, work)}"'
    )
    # The four caption stages only: the demo's (offline) instruct stage is not measured.
    text = text.replace(
        "[captioning.instruct]\nenabled = true", "[captioning.instruct]\nenabled = false"
    )
    for stage in LLM_STAGES:
        text += f"""
[captioning.{stage}]
provider = "{provider}"
model = "bench-{stage}"
base_url = "{base_url}"
api_key_env = ""
max_concurrency = {LIMIT}
"""
    text += f"\n[workers]\ncaption_processes = {PROCESSES[0]!r}\n".replace("'", '"')
    config = work / "pathgen.toml"
    config.write_text(text)
    return config


async def _prepare(settings: Any, entries: list[Any], n_tiles: int) -> None:
    """The output of tile/embed/select, inserted: ``n_tiles`` selected tiles, describe queued."""
    engine = await open_store(settings)
    try:
        await registry.ensure_run(engine, RUN, settings, owner="bench")
        slide_ids = await registry.add_slides(engine, RUN, entries, max_attempts=3)
        async with session_scope(engine) as s:
            slides = [await s.get(Slide, i) for i in slide_ids]
            for slide in slides:
                slide.width, slide.height, slide.mpp = SLIDE_W, SLIDE_H, SLIDE_MPP
                slide.status = "ok"
            size = round(settings.tiling.tile_size * settings.tiling.mpp / SLIDE_MPP)
            grid = [
                (slide, x, y)
                for slide in slides
                for y in range(0, SLIDE_H - size + 1, size)
                for x in range(0, SLIDE_W - size + 1, size)
            ]
            tiles = []
            for slide, x, y in grid[:n_tiles]:
                tiles.append(
                    Tile(
                        slide_id=slide.id,
                        x=x,
                        y=y,
                        size=size,
                        read_level=0,
                        mpp=settings.tiling.mpp,
                        tile_px=settings.tiling.tile_size,
                        tissue_fraction=1.0,
                    )
                )
            s.add_all(tiles)
            await s.flush()
            s.add_all(
                Selection(run_id=RUN, tile_id=t.id, kept=True, reasons=["bench"]) for t in tiles
            )
            await s.execute(update(WorkItem).values(status="done"))
            for stage in ("embed", "select"):
                await queue.enqueue(s, RUN, [NewWork(stage, str(i)) for i in slide_ids])
            await s.execute(update(WorkItem).values(status="done"))
            await queue.enqueue(s, RUN, [NewWork("describe", str(t.id)) for t in tiles])
    finally:
        await engine.dispose()


class _Sampler:
    """Samples the server's counters, this process's CPU and RSS, and the queue."""

    def __init__(self, server: Any, db_url: str, limits: dict[str, int]) -> None:
        self.server = server
        self.engine = make_engine(db_url)
        self.limits = limits
        self.rows: list[dict[str, Any]] = []
        self.rss_at_2000: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            stats = await asyncio.to_thread(self.server.stats)
            counts = await queue.counts(self.engine, RUN)
            waiting = {
                st: min(self.limits[st], by.get("queued", 0) + by.get("leased", 0))
                for st, by in counts.items()
                if st in self.limits
            }
            # What the progress table and `pathgen status` show, beside the server's figures.
            shown = await snapshot(self.engine, RUN, window_s=STATUS_WINDOW_S)
            llm = [st for st in shown.stages if st.stage in self.limits]
            row = {
                **stats,
                "cpu": _cpu_s(),
                "rss": _rss_mb(),
                "limit": sum(waiting.values()),
                "shown_in_flight": sum(
                    st.in_flight if st.calls_in_flight is None else st.calls_in_flight for st in llm
                ),
                "shown_rate": sum(st.rate_per_s or 0.0 for st in llm),
            }
            self.rows.append(row)
            if self.rss_at_2000 is None and stats["count"] >= 2000:
                self.rss_at_2000 = row["rss"]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        await self.engine.dispose()


async def _timed(settings: Any, entries: Any, server: Any, db_url: str, **kw: Any) -> dict:
    limits = {s: LIMIT for s in LLM_STAGES}
    sampler = _Sampler(server, db_url, limits)
    stop = asyncio.Event()
    task = asyncio.create_task(sampler.run(stop))
    count0 = server.stats()["count"]
    t0 = time.perf_counter()
    summary = await run_pipeline(settings, entries, run_id=RUN, show_progress=False, **kw)
    wall = time.perf_counter() - t0
    stop.set()
    await task
    end = {**server.stats(), "cpu": _cpu_s(), "rss": _rss_mb()}
    active = [r for r in sampler.rows if r["count"] > count0]
    first = active[0] if active else end
    calls = end["count"] - first["count"]
    busy = [r for r in active if r["limit"] > 0]
    shown = _status_ratios(active)
    return {
        "exit": int(summary.outcome.code),
        "wall_s": round(wall, 1),
        "calls": end["count"] - count0,
        "phase_s": round(end["t"] - first["t"], 1),
        "calls_per_s": round(calls / max(1e-9, end["t"] - first["t"]), 1),
        "mean_in_flight": round(
            (end["in_flight_s"] - first["in_flight_s"]) / max(1e-9, end["t"] - first["t"]), 1
        ),
        "inflight_ratio": round(
            sum(r["in_flight"] / r["limit"] for r in busy) / max(1, len(busy)), 3
        ),
        "cpu_ms_per_call": round(1000 * (end["cpu"] - first["cpu"]) / max(1, calls), 2),
        **shown,
        "rss_2000_mb": round(sampler.rss_at_2000 or 0.0, 1),
        "rss_end_mb": round(sampler.rows[-1]["rss"] if sampler.rows else end["rss"], 1),
        "peak_rss_mb": round(max([end["rss"], *(r["rss"] for r in sampler.rows)]), 1),
        "rss_growth": round(sampler.rows[-1]["rss"] / sampler.rss_at_2000 - 1, 3)
        if sampler.rss_at_2000
        else None,
    }


def _status_ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Over samples a full rate window into the phase while the server had calls in flight:
    in flight, the mean shown ÷ the mean the server counts (what is shown is up to a beat,
    about 1 s, old, and the count swings by half within a second as calls return in
    waves); rate, the mean of shown ÷ server over the same 5 s windows."""
    shown, server, rate = [], [], []
    for i, row in enumerate(rows):
        back = next((r for r in rows[:i] if row["t"] - r["t"] <= STATUS_WINDOW_S), None)
        if back is None or row["t"] - rows[0]["t"] < STATUS_WINDOW_S or not row["in_flight"]:
            continue
        server_rate = (row["count"] - back["count"]) / (row["t"] - back["t"])
        shown.append(row["shown_in_flight"])
        server.append(row["in_flight"])
        if server_rate:
            rate.append(row["shown_rate"] / server_rate)
    return {
        "status_in_flight_ratio": round(sum(shown) / sum(server), 3) if server else None,
        "status_rate_ratio": round(sum(rate) / len(rate), 3) if rate else None,
    }


def _describe_ratio(server: Any) -> float:
    times = sorted(r.t for r in server.requests(bodies=False) if r.model == "bench-describe")
    if len(times) < 10:
        return 0.0
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    rate = (len(times) * 8 // 10) / max(1e-9, hi - lo)
    return round(rate / (LIMIT / LATENCY), 3)


async def _exactly_once(db_url: str, n_tiles: int, server_calls: int) -> dict[str, Any]:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            revs = dict(
                (f"{stage}/{branch}/{status}", n)
                for stage, branch, status, n in await s.execute(
                    select(
                        CaptionRevision.stage,
                        CaptionRevision.branch,
                        CaptionRevision.status,
                        func.count(),
                    ).group_by(
                        CaptionRevision.stage, CaptionRevision.branch, CaptionRevision.status
                    )
                )
            )
            not_done = await s.scalar(
                select(func.count()).select_from(WorkItem).where(WorkItem.status != "done")
            )
    finally:
        await engine.dispose()
    expected = {
        "describe/caption/ok": n_tiles,
        "degrade/degraded/ok": n_tiles,
        "revise/caption/ok": n_tiles,
        "revise/degraded/ok": n_tiles,
        "summarize/caption/ok": 2 * n_tiles,  # the caption phase and the text-only redo
    }
    llm_revisions = sum(n for k, n in revs.items() if not k.startswith("degrade/"))
    ok = revs == expected and not_done == 0 and llm_revisions == server_calls
    return {"ok": ok, "revisions": revs, "not_done": not_done, "server_calls": server_calls}


async def _case(db: str, provider: str, n_tiles: int, demo: Path) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_mock_server(latency=LATENCY, jitter=0.5, keep_bodies=False, process=True) as server,
    ):
        work = Path(tmp)
        if db == "sqlite":
            db_url = f"sqlite+aiosqlite:///{work / 'pathgen.db'}"
            return await _measure(db_url, provider, n_tiles, demo, work, server)
        async with postgres_database() as db_url:
            return await _measure(db_url, provider, n_tiles, demo, work, server)


async def _measure(
    db_url: str, provider: str, n_tiles: int, demo: Path, work: Path, server: Any
) -> dict[str, Any]:
    base_url = server.base_url
    settings = load_settings(_config(demo, work, db_url, provider, base_url, n_tiles))
    if settings.captioning.instruct.enabled:
        raise SystemExit("bench_pipeline measures the four caption stages: disable instruct")
    entries = read_manifest(settings.run.manifest)
    await _prepare(settings, entries, n_tiles)
    caption = await _timed(settings, entries, server, db_url, stages=CAPTION)
    caption["describe_ratio"] = _describe_ratio(server)
    text = await _timed(
        settings, entries, server, db_url, stages=["summarize"], redo=["summarize"], force=True
    )
    once = await _exactly_once(db_url, n_tiles, server.stats()["count"])
    return {
        **caption,
        "text_calls": text["calls"],
        "text_calls_per_s": text["calls_per_s"],
        "text_cpu_ms_per_call": text["cpu_ms_per_call"],
        "peak_rss_mb": max(caption["peak_rss_mb"], text["peak_rss_mb"]),
        "exactly_once": once["ok"],
        "revisions": once["revisions"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiles", type=int, default=int(os.environ.get("PATHGEN_BENCH_TILES", "2600"))
    )
    parser.add_argument("--cases", default="sqlite:openai,postgres:openai,sqlite:mistral")
    parser.add_argument(
        "--processes", default="auto", help="workers.caption_processes: auto or a number"
    )
    args = parser.parse_args()
    PROCESSES[0] = args.processes if args.processes == "auto" else int(args.processes)
    os.environ.setdefault(
        "PATHGEN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    demo = Path(tempfile.gettempdir()) / "pathgen-bench" / "demo"
    prepare_demo(demo)
    results: dict[str, Any] = {}
    for case in args.cases.split(","):
        db, provider = case.split(":")
        fig = await _case(db, provider, args.tiles, demo)
        results[case] = fig
        print(
            f"{case}: describe {fig['describe_ratio']:.3f} of {LIMIT / LATENCY:.0f}/s, "
            f"{fig['calls_per_s']:.0f} calls/s, in flight {fig['mean_in_flight']:.0f} "
            f"(ratio {fig['inflight_ratio']:.3f}), {fig['cpu_ms_per_call']:.2f} ms CPU/call "
            f"(text-only {fig['text_cpu_ms_per_call']:.2f}), RSS {fig['rss_2000_mb']:.0f} -> "
            f"{fig['rss_end_mb']:.0f} MB (peak {fig['peak_rss_mb']:.0f}), status/server "
            f"in flight {fig['status_in_flight_ratio']}, rate {fig['status_rate_ratio']}, "
            f"exactly once: {fig['exactly_once']}",
            flush=True,
        )
    print(
        json.dumps(
            {
                "tiles": args.tiles,
                "processes": args.processes,
                "load": os.getloadavg()[0],
                "cases": results,
                "goals": GOALS,
            }
        )
    )


if __name__ == "__main__":
    run_until_signalled(lambda _stop: main())  # the event loop `pathgen run` uses
