"""An online instruct stage is a paid stage: estimated (items, then the judge) and held to
the budget like the caption stages, its spend read from its items."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs.budget import Budget
from pathgen.runs.callshape import call_shapes, stage_calls
from pathgen.runs.estimate import SlideTiles, build_estimate
from pathgen.settings import Settings
from pathgen.store.instruct import NewInstructItem, append_items
from tests.populate import populate

PRICES = {"price_input_per_1k": 0.01, "price_output_per_1k": 0.03}


def _settings(url: str, **run: object) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "run": run,
            "captioning": {
                "instruct": {"enabled": True, "provider": "openai", "model": "m", **PRICES},
            },
        }
    )


def test_online_instruct_is_two_paid_calls_per_tile_in_the_estimate() -> None:
    settings = _settings("sqlite+aiosqlite:///unused.db")
    assert len(stage_calls(settings)["instruct"]) == 2
    items, judge = call_shapes(settings, report_chars=0, output_tokens={})["instruct"]
    assert items.input_tokens > 0 and judge.input_tokens > items.output_tokens
    estimate = build_estimate(
        settings, "r", [SlideTiles(10, False)], "manifest", report_chars=0, outputs={}, latency={}
    )
    stage = {s.stage: s for s in estimate.stages}["instruct"]
    assert stage.calls == 20 and stage.cost > 0
    offline = Settings.model_validate({"captioning": {"instruct": {"enabled": True}}})
    assert "instruct" not in stage_calls(offline)  # template-made items cost nothing


async def test_budget_counts_instruct_spend_and_holds_the_stage(
    engine: AsyncEngine, db_url: str
) -> None:
    p = await populate(engine)
    common = dict(
        run_id=p.run_id,
        tile_id=p.tile_ids[0],
        revision_id=p.summarize_ids[0],
        provider="openai",
        model="m",
        verifier="judge:m",
        verify_status="passed",
        kind="open",
        turns=[{"question": "Q?", "answer": "A.", "kind": "open"}],
    )
    await append_items(engine, [NewInstructItem(**common, cost=0.25) for _ in range(2)])
    budget = Budget(engine, p.run_id, _settings(db_url, max_cost_usd=0.75))
    spend = await budget.read()
    assert spend.cost["instruct"] == 0.5
    worst = budget.worst_item("instruct", spend)  # both calls, max_tokens of output each
    assert worst > 0
    assert 0 < await budget.allow("instruct", 4) == int(0.25 // worst) < 4
    tight = Budget(engine, p.run_id, _settings(db_url, max_cost_usd=0.5))
    assert await tight.allow("instruct", 4) == 0 and "instruct" in tight.held
    assert "spent $0.5000" in (await tight.reached() or "")
