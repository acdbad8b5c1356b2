"""The spending limit: read from the database, so it holds across workers; exit code 5;
raising it and running again finishes the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.exitcodes import ExitCode
from pathgen.runs import queue, registry
from pathgen.runs.budget import Budget
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline, run_worker
from pathgen.settings import Settings
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import CaptionRevision, Slide, Tile
from pathgen.store.revisions import NewRevision, append_revisions
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import demo_template, pipeline_config, result_counts, settings_for

CAPTION = ["describe", "degrade", "revise", "summarize"]


def _paid(limit: float | None = None, stage_limit: float | None = None) -> Settings:
    stage = {
        "provider": "openai",
        "model": "m",
        "max_tokens": 100,
        "price_input_per_1k": 1.0,
        "price_output_per_1k": 2.0,
    }
    return Settings.model_validate(
        {
            "run": {"max_cost_usd": limit},
            "captioning": {
                "describe": {**stage, "max_cost_usd": stage_limit},
                "revise": stage,
                "summarize": stage,
            },
        }
    )


async def _seed(engine: AsyncEngine, settings: Settings, costs: list[float]) -> None:
    await registry.ensure_run(engine, "r", settings)
    async with session_scope(engine) as s:
        slide = Slide(path="/x.svs", status="done")
        s.add(slide)
        await s.flush()
        tile = Tile(
            slide_id=slide.id,
            x=0,
            y=0,
            size=10,
            read_level=0,
            mpp=0.5,
            tile_px=10,
            tissue_fraction=1,
        )
        s.add(tile)
        await s.flush()
        tile_id = tile.id
        await queue.enqueue(s, "r", [queue.NewWork("describe", str(i)) for i in range(10)])
    await append_revisions(
        engine,
        [
            NewRevision(tile_id, "r", "describe", "t", "openai", "m", input_tokens=500, cost=c)
            for c in costs
        ],
    )


async def test_allow_counts_spend_and_calls_in_flight(engine: AsyncEngine) -> None:
    settings = _paid(limit=1.0)
    await _seed(engine, settings, [0.2, 0.1])
    budget = Budget(engine, "r", settings, refresh_s=0.0)
    spend = await budget.read()
    worst = budget.worst_item("describe", spend)
    # largest stored input (500) + 20%, and max_tokens of output
    assert worst == pytest.approx(600 / 1000 * 1.0 + 100 / 1000 * 2.0)
    assert spend.total == pytest.approx(0.3)
    assert await budget.allow("describe", 50) == int(0.7 / worst)  # 0.7 left
    assert budget.held == {"describe"}
    claimed = await queue.claim(engine, owner="w", run_id="r", stages=["describe"], limit=1)
    assert len(claimed) == 1  # one call in flight, in another worker: less room
    assert await budget.allow("describe", 50) == int((0.7 - worst) / worst)
    assert await budget.allow("degrade", 7) == 7  # the rules stage costs nothing
    line = await budget.reached()
    assert line and "spent $0.3000 of run.max_cost_usd $1" in line


async def test_stage_limit_holds_that_stage_only(engine: AsyncEngine) -> None:
    settings = _paid(stage_limit=0.25)
    await _seed(engine, settings, [0.2])
    budget = Budget(engine, "r", settings, refresh_s=0.0)
    assert await budget.allow("describe", 4) == 0
    assert await budget.allow("revise", 4) == 4
    assert budget.held == {"describe"}
    assert "describe spent $0.2000 of its max_cost_usd $0.25" in (await budget.reached() or "")


async def _spent(db_url: str, run_id: str) -> float:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            total = await s.scalar(
                select(func.sum(CaptionRevision.cost)).where(CaptionRevision.run_id == run_id)
            )
            return float(total or 0.0)
    finally:
        await engine.dispose()


def _config(tmp_path: Path, db_url: str, base_url: str, name: str, limit: float | None) -> Path:
    stage = (
        f'provider = "openai"\nmodel = "mock-vlm"\nbase_url = "{base_url}"\napi_key_env = ""\n'
        "max_concurrency = 3\nmax_tokens = 40\nprice_input_per_1k = 1.0\n"
        "price_output_per_1k = 2.0\n"
    )
    run = f'[run]\nname = "{name}"\n' + (f"max_cost_usd = {limit}\n" if limit else "")
    extra = f"[captioning.describe]\n{stage}[captioning.revise]\n{stage}"
    extra += f"[captioning.summarize]\n{stage}"
    config = pipeline_config(demo_template(tmp_path / "template"), tmp_path / name, db_url, extra)
    text = config.read_text().replace('[run]\nname = "demo"\n', run)
    config.write_text(text)
    return config


async def _workers(config: Path, run_id: str, n: int) -> list[ExitCode]:
    settings = settings_for(config)
    summaries = await asyncio.gather(
        *(
            run_worker(settings, stages=CAPTION, run_id=run_id, exit_when_idle=True)
            for _ in range(n)
        )
    )
    return [s.outcome.code for s in summaries if s.outcome is not None]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
async def test_four_workers_stop_at_the_budget_and_a_raised_budget_finishes(
    tmp_path: Path, db_url: str
) -> None:
    with run_mock_server(latency=0.02) as srv:
        # what the whole run costs, to set the limit at 30% of it
        ref = _config(tmp_path, db_url, srv.base_url, "ref", None)
        settings = settings_for(ref)
        await run_pipeline(settings, read_manifest(settings.run.manifest), show_progress=False)
        full = await _spent(db_url, "ref")
        assert full > 0

        limit = round(0.3 * full, 6)
        capped = _config(tmp_path, db_url, srv.base_url, "capped", limit)
        settings = settings_for(capped)
        summary = await run_pipeline(
            settings,
            read_manifest(settings.run.manifest),
            stages=["tile", "embed", "select"],
            show_progress=False,
        )
        assert summary.outcome.code == ExitCode.OK
        codes = await _workers(capped, "capped", 4)
        spent = await _spent(db_url, "capped")

        engine = make_engine(db_url)
        try:
            budget = Budget(engine, "capped", settings)
            spend = await budget.read()
            worst = max(budget.worst_item(s, spend) for s in ("describe", "revise", "summarize"))
        finally:
            await engine.dispose()
        assert codes == [ExitCode.BUDGET] * 4
        # workers reading at the same moment claim on the same room: at most the other
        # 3 workers' free slots of one stage (max_concurrency 3) at the worst case each
        margin = 3 * 3 * worst
        assert spent <= limit + margin, (spent, limit, margin)
        assert spent >= limit - 4 * 3 * worst, "stopped long before the limit"
        assert spent < 0.5 * full

        raised = _config(tmp_path, db_url, srv.base_url, "capped", full * 2)
        settings = settings_for(raised)
        summary = await run_pipeline(
            settings, read_manifest(settings.run.manifest), show_progress=False
        )
        assert summary.outcome.code == ExitCode.OK
    capped_counts = await result_counts(db_url, "capped")
    ref_counts = await result_counts(db_url, "ref")
    assert capped_counts["revisions"] == ref_counts["revisions"]
    assert capped_counts["total_revisions"] == capped_counts["distinct_revisions"]
    # the same calls (degraded copies differ a little between runs: their seed is the run's)
    assert await _spent(db_url, "capped") == pytest.approx(full, rel=0.01)
