"""What a run's LLM calls will cost, before it is run: calls, tokens, cost, wall time.

Tiles to caption come from, in this order of precedence:

* ``selections``: the run's kept tiles, when the run exists and has selected them;
* ``tiles``: the slides' stored tiles (tiled by this or another run), at most
  ``top_k`` (twice with a report) + ``max_diverse`` per slide: an upper bound;
* ``manifest``: ``top_k`` (twice with a report) + ``max_diverse`` per slide of the
  manifest: an upper bound.

Per call, input tokens come from the rendered templates (:mod:`.callshape`) with the
slides' mean report length; output tokens from the stored calls of the same stage and
model (any run in the database, e.g. a pilot run), else half of ``max_tokens``. Batch
cost is :data:`BATCH_DISCOUNT` of online cost (OpenAI's and Mistral's batch price).
Wall time per stage is its calls at the slowest of ``max_concurrency`` calls per
stored (else :data:`ASSUMED_LATENCY_S`) latency, ``requests_per_minute`` and
``tokens_per_minute``; stages stream, so the run takes about as long as its slowest.

Example::

    est = await estimate_run(engine, settings, entries, "breast-1")
    est.total_cost, est.stages[0].calls
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import PathgenError
from pathgen.runs.callshape import CallShape, call_shapes, items_per_tile, stage_calls
from pathgen.runs.manifest import SlideEntry
from pathgen.settings import Settings
from pathgen.store.engine import read_scope, session_scope
from pathgen.store.models import (
    CaptionRevision,
    RunEstimate,
    RunSlide,
    Selection,
    Slide,
    Tile,
)

BATCH_DISCOUNT = 0.5
ASSUMED_LATENCY_S = 5.0


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float
    batch_cost: float
    wall_s: float
    #: Where the output tokens per call come from: "stored calls" or "max_tokens / 2".
    output_basis: str


@dataclass(frozen=True)
class Estimate:
    run_id: str
    tiles: int
    #: Where the tile count comes from: "selections", "tiles" or "manifest".
    basis: str
    stages: tuple[StageEstimate, ...]

    @property
    def total_cost(self) -> float:
        return sum(s.cost for s in self.stages)

    @property
    def total_batch_cost(self) -> float:
        return sum(s.batch_cost for s in self.stages)

    @property
    def wall_s(self) -> float:
        return max((s.wall_s for s in self.stages), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total_cost": self.total_cost, "wall_s": self.wall_s}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Estimate:
        stages = tuple(StageEstimate(**s) for s in data["stages"])
        return cls(data["run_id"], data["tiles"], data["basis"], stages)


@dataclass(frozen=True)
class SlideTiles:
    """Tiles to caption of one slide, and whether it has a report."""

    tiles: int
    report: bool


def selection_cap(settings: Settings, report: bool) -> int:
    """The most tiles selection keeps of one slide."""
    sel = settings.selection
    return sel.top_k * (2 if report else 1) + sel.max_diverse


async def _from_selections(engine: AsyncEngine, run_id: str) -> list[SlideTiles]:
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(RunSlide.report_text.is_not(None), func.count(func.distinct(Selection.tile_id)))
            .join(Tile, Tile.id == Selection.tile_id)
            .join(RunSlide, (RunSlide.run_id == run_id) & (RunSlide.slide_id == Tile.slide_id))
            .where(Selection.run_id == run_id, Selection.kept.is_(True))
            .group_by(RunSlide.report_text.is_not(None))
        )
        return [SlideTiles(int(n), bool(report)) for report, n in rows]


async def _stored_tiles(engine: AsyncEngine, paths: Sequence[str]) -> dict[str, int]:
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(Slide.path, func.count(Tile.id))
            .join(Tile, Tile.slide_id == Slide.id)
            .where(Slide.path.in_(list(paths)))
            .group_by(Slide.path)
        )
        return {path: int(n) for path, n in rows}


def _report(entry: SlideEntry) -> str:
    try:
        return (entry.report_text() or "").strip()
    except PathgenError:
        return ""


async def _observed(
    engine: AsyncEngine, settings: Settings
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean output tokens and latency of stored successful calls, per stage, of the model
    each stage is configured with (any run)."""
    outputs: dict[str, float] = {}
    latency: dict[str, float] = {}
    async with read_scope(engine) as session:
        for stage, calls in stage_calls(settings).items():
            row = (
                await session.execute(
                    select(
                        func.avg(CaptionRevision.output_tokens),
                        func.avg(CaptionRevision.latency_s),
                        func.count(),
                    ).where(
                        CaptionRevision.stage == stage,
                        CaptionRevision.model == calls[0].model,
                        CaptionRevision.provider == calls[0].provider,
                        CaptionRevision.status == "ok",
                    )
                )
            ).one()
            if row[2]:
                outputs[stage], latency[stage] = float(row[0]), float(row[1])
    return outputs, latency


def _wall_s(shape: CallShape, calls: int, latency: float) -> float:
    cfg = shape.settings
    per_s = cfg.max_concurrency / max(latency, 1e-3)
    if cfg.requests_per_minute:
        per_s = min(per_s, cfg.requests_per_minute / 60)
    if cfg.tokens_per_minute:
        tokens = max(1, shape.input_tokens + shape.output_tokens)
        per_s = min(per_s, cfg.tokens_per_minute / 60 / tokens)
    return calls / per_s


def build_estimate(
    settings: Settings,
    run_id: str,
    slides: Sequence[SlideTiles],
    basis: str,
    *,
    report_chars: int,
    outputs: dict[str, float],
    latency: dict[str, float],
) -> Estimate:
    """Pure: the estimate for ``slides`` (see the module doc)."""
    with_report = sum(s.tiles for s in slides if s.report)
    without = sum(s.tiles for s in slides if not s.report)
    shaped = call_shapes(settings, report_chars=report_chars, output_tokens=outputs)
    plain = call_shapes(settings, report_chars=0, output_tokens=outputs)
    per_tile = items_per_tile(settings)
    stages = []
    for stage, shapes in shaped.items():
        calls = tokens_in = tokens_out = 0
        cost = wall = 0.0
        for shape, bare in zip(shapes, plain[stage], strict=True):
            n_rep, n_bare = with_report * per_tile[stage], without * per_tile[stage]
            calls += n_rep + n_bare
            tokens_in += n_rep * shape.input_tokens + n_bare * bare.input_tokens
            tokens_out += (n_rep + n_bare) * shape.output_tokens
            cost += n_rep * shape.cost() + n_bare * bare.cost()
            wall = max(wall, _wall_s(shape, n_rep + n_bare, latency.get(stage, ASSUMED_LATENCY_S)))
        stages.append(
            StageEstimate(
                stage,
                calls,
                tokens_in,
                tokens_out,
                cost,
                cost * BATCH_DISCOUNT,
                wall,
                "stored calls" if stage in outputs else "max_tokens / 2",
            )
        )
    return Estimate(run_id, with_report + without, basis, tuple(stages))


async def estimate_run(
    engine: AsyncEngine, settings: Settings, entries: Sequence[SlideEntry], run_id: str
) -> Estimate:
    """Estimate ``run_id`` over ``entries`` with ``settings`` (see the module doc)."""
    slides = await _from_selections(engine, run_id)
    basis = "selections"
    texts = [_report(e) for e in entries]
    reports = [r for r in texts if r]
    async with read_scope(engine) as session:
        stored = await session.scalar(
            select(func.avg(func.length(RunSlide.report_text))).where(
                RunSlide.run_id == run_id, RunSlide.report_text.is_not(None)
            )
        )
    if slides:
        report_chars = round(stored) if stored else 0
    else:
        tiled = await _stored_tiles(engine, [e.path for e in entries])
        basis = "tiles" if tiled else "manifest"
        slides = []
        for entry, text in zip(entries, texts, strict=True):
            cap = selection_cap(settings, bool(text))
            n = min(cap, tiled[entry.path]) if entry.path in tiled else cap
            slides.append(SlideTiles(n, bool(text)))
        report_chars = round(sum(map(len, reports)) / len(reports)) if reports else 0
    outputs, latency = await _observed(engine, settings)
    return build_estimate(
        settings,
        run_id,
        slides,
        basis,
        report_chars=report_chars,
        outputs=outputs,
        latency=latency,
    )


async def store_estimate(engine: AsyncEngine, estimate: Estimate) -> None:
    """Keep ``estimate`` as the run's last estimate (replacing an earlier one)."""
    async with session_scope(engine) as session:
        row = await session.get(RunEstimate, estimate.run_id)
        if row is None:
            session.add(RunEstimate(run_id=estimate.run_id, estimate=estimate.to_json()))
        else:
            row.estimate = estimate.to_json()


async def stored_estimate(engine: AsyncEngine, run_id: str) -> Estimate | None:
    async with read_scope(engine) as session:
        row = await session.get(RunEstimate, run_id)
    return Estimate.from_json(row.estimate) if row is not None else None


@dataclass(frozen=True)
class StageActual:
    stage: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float


async def actual_usage(engine: AsyncEngine, run_id: str) -> dict[str, StageActual]:
    """Calls (stored revisions made by a provider), tokens and cost per stage of a run."""
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(
                CaptionRevision.stage,
                func.sum(case((CaptionRevision.input_tokens > 0, 1), else_=0)),
                func.sum(CaptionRevision.input_tokens),
                func.sum(CaptionRevision.output_tokens),
                func.sum(CaptionRevision.cost),
            )
            .where(CaptionRevision.run_id == run_id, CaptionRevision.provider != "rules")
            .group_by(CaptionRevision.stage)
        )
        return {
            stage: StageActual(stage, int(n or 0), int(i or 0), int(o or 0), float(c or 0))
            for stage, n, i, o, c in rows
        }
