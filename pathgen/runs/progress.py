"""Run progress: per-stage counts, rates, ETA, tokens and cost — live (rich) or JSON lines.

``in flight`` is, for an LLM stage, the calls its workers have sent and not had answered
yet (each worker writes its count about every second, :mod:`pathgen.store.beats`), else
the stage's items leased right now; ``rate/s`` is the items it finished over the last
:data:`RATE_WINDOW_S` seconds. Both are read from the database, so ``pathgen status`` on
any machine shows what every worker of the run does together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs import queue
from pathgen.runs.outcome import effective_status
from pathgen.runs.owner import lease_holders, owner_alive
from pathgen.store import beats
from pathgen.store.engine import read_scope
from pathgen.store.models import CaptionRevision, InstructItem, Run, RunSlide, Slide
from pathgen.store.outage import rides_out_outages
from pathgen.types import PIPELINE_STAGES

#: Stages shown only when the run has items of them.
OPTIONAL_STAGES = frozenset({"fuse", "instruct"})
#: The window of the rate column, in seconds.
RATE_WINDOW_S = 10.0


@dataclass
class StageProgress:
    stage: str
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    queued: int = 0
    paused: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    rate_per_s: float | None = None
    eta_s: float | None = None
    #: Provider calls sent and not answered yet, as the stage's workers report them
    #: (None: no worker reports calls for the stage; ``in_flight`` counts leased items).
    calls_in_flight: int | None = None

    @property
    def total(self) -> int:
        return self.done + self.failed + self.in_flight + self.queued + self.paused


@dataclass
class RunProgress:
    run_id: str
    status: str
    stages: list[StageProgress] = field(default_factory=list)
    slides_failed: int = 0
    at: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return all(s.in_flight == 0 and s.queued == 0 for s in self.stages)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = {
            "done": sum(s.done for s in self.stages),
            "failed": sum(s.failed for s in self.stages),
            "cost": round(sum(s.cost for s in self.stages), 6),
            "input_tokens": sum(s.input_tokens for s in self.stages),
            "output_tokens": sum(s.output_tokens for s in self.stages),
        }
        return data


@rides_out_outages("progress")
async def snapshot(
    engine: AsyncEngine, run_id: str, window_s: float = RATE_WINDOW_S
) -> RunProgress:
    """The run's progress now, with each stage's rate over the last ``window_s`` seconds."""
    counts = await queue.counts(engine, run_id)
    async with read_scope(engine) as session:
        recent = await queue.recent_done(session, run_id, window_s)
        calls = await beats.calls_in_flight(session, run_id)
        run = await session.get(Run, run_id)
        usage = await session.execute(
            select(
                CaptionRevision.stage,
                func.sum(CaptionRevision.input_tokens),
                func.sum(CaptionRevision.output_tokens),
                func.sum(CaptionRevision.cost),
            )
            .where(CaptionRevision.run_id == run_id)
            .group_by(CaptionRevision.stage)
        )
        instruct = (
            await session.execute(
                select(
                    func.sum(InstructItem.input_tokens),
                    func.sum(InstructItem.output_tokens),
                    func.sum(InstructItem.cost),
                ).where(InstructItem.run_id == run_id)
            )
        ).one()
        slides_failed = await session.scalar(
            select(func.count())
            .select_from(RunSlide)
            .join(Slide, Slide.id == RunSlide.slide_id)
            .where(RunSlide.run_id == run_id, Slide.status == "failed")
        )
    tokens = {stage: (i or 0, o or 0, c or 0.0) for stage, i, o, c in usage}
    if instruct[0] is not None:  # instruct items carry their own usage
        tokens["instruct"] = (instruct[0], instruct[1] or 0, instruct[2] or 0.0)
    stages = []
    for stage in [*PIPELINE_STAGES, *sorted(set(counts) - set(PIPELINE_STAGES))]:
        if stage in OPTIONAL_STAGES and stage not in counts:
            continue  # e.g. fuse, only when several describers are configured
        by = counts.get(stage, {})
        i, o, c = tokens.get(stage, (0, 0, 0.0))
        stages.append(
            StageProgress(
                stage,
                done=by.get("done", 0),
                failed=by.get("failed", 0),
                in_flight=by.get("leased", 0),
                queued=by.get("queued", 0),
                paused=by.get("paused", 0),
                input_tokens=int(i),
                output_tokens=int(o),
                cost=float(c),
                rate_per_s=recent.get(stage, 0) / window_s,
                calls_in_flight=calls.get(stage),
            )
        )
    status = "unknown"
    if run is not None:
        live, dead = await lease_holders(engine, run_id)
        status = effective_status(
            run.status,
            counts,
            owner_alive=owner_alive(run.owner),
            live_holders=live,
            dead_holders=dead,
        )
    return RunProgress(run_id, status, stages, int(slides_failed or 0))


def with_rates(now: RunProgress, first: RunProgress | None) -> RunProgress:
    """Fill the ETA per stage: from the recent rate, else from the change since ``first``."""
    dt = max(now.at - first.at, 1e-6) if first is not None else 0.0
    before = {s.stage: s for s in first.stages} if first is not None else {}
    for s in now.stages:
        rate = s.rate_per_s or 0.0
        prev = before.get(s.stage)
        if not rate and prev is not None and dt:
            rate = (s.done + s.failed - prev.done - prev.failed) / dt
        remaining = s.queued + s.in_flight
        s.eta_s = remaining / rate if rate > 0 else None
    return now


def render(progress: RunProgress) -> Table:
    table = Table(title=f"pathgen run {progress.run_id} ({progress.status})", expand=False)
    for col in (
        "stage",
        "done",
        "failed",
        "in flight",
        "queued",
        "paused",
        "rate/s",
        "ETA",
        "tokens in/out",
        "cost",
    ):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in progress.stages:
        table.add_row(
            s.stage,
            str(s.done),
            str(s.failed),
            str(s.in_flight if s.calls_in_flight is None else s.calls_in_flight),
            str(s.queued),
            str(s.paused) if s.paused else "-",
            f"{s.rate_per_s:.1f}" if s.rate_per_s else "-",
            _fmt_eta(s.eta_s),
            f"{s.input_tokens}/{s.output_tokens}" if s.input_tokens or s.output_tokens else "-",
            f"${s.cost:.4f}" if s.cost else "-",
        )
    if progress.slides_failed:
        table.caption = f"{progress.slides_failed} slide(s) failed: see `pathgen status --json`"
    return table


def _fmt_eta(eta: float | None) -> str:
    if eta is None:
        return "-"
    minutes, seconds = divmod(int(eta), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


async def report_until(
    engine: AsyncEngine,
    run_id: str,
    done: asyncio.Event,
    *,
    log_format: str = "rich",
    interval: float = 1.0,
) -> None:
    """Show progress until ``done`` is set: a live table, or one JSON line per interval.

    The live table needs a terminal; when stderr is not one (a log file, a pipe) nothing
    is drawn (the command's summary prints the final table; ``json`` logs progress)."""
    first: RunProgress | None = None
    if log_format == "json":
        while not done.is_set():
            prog = with_rates(await snapshot(engine, run_id), first)
            first = first or prog
            sys.stdout.write(json.dumps({"event": "progress", **prog.to_json()}) + "\n")
            sys.stdout.flush()
            await _sleep_or(done, interval * 5)
        return
    console = Console(stderr=True)
    if not console.is_terminal:
        await done.wait()
        return
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while not done.is_set():
            prog = with_rates(await snapshot(engine, run_id), first)
            first = first or prog
            live.update(render(prog))
            await _sleep_or(done, interval)
        live.update(render(with_rates(await snapshot(engine, run_id), first)))


async def _sleep_or(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
