"""The estimate: against a run on the local server (which reports usage), and from
stored tiles for a manifest whose slides are tiled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.exitcodes import ExitCode
from pathgen.runs.estimate import (
    actual_usage,
    estimate_run,
    selection_cap,
    store_estimate,
    stored_estimate,
)
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import open_store, run_pipeline
from pathgen.settings import Settings
from pathgen.store.engine import session_scope
from pathgen.store.models import Slide, Tile
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import demo_template, pipeline_config, settings_for

PAID = ("describe", "revise", "summarize")


def _config(tmp_path: Path, db_url: str, base_url: str, name: str, manifest: Path | None) -> Path:
    stage = (
        f'provider = "openai"\nmodel = "mock-vlm"\nbase_url = "{base_url}"\napi_key_env = ""\n'
        "max_concurrency = 4\nmax_tokens = 64\nprice_input_per_1k = 0.5\n"
        "price_output_per_1k = 1.5\n"
    )
    extra = "".join(f"[captioning.{s}]\n{stage}" for s in PAID)
    config = pipeline_config(demo_template(tmp_path / "template"), tmp_path / name, db_url, extra)
    text = config.read_text().replace('name = "demo"', f'name = "{name}"')
    if manifest is not None:
        text = text.replace("manifest = ", f'manifest = "{manifest}"\n# was: manifest = ')
    config.write_text(text)
    return config


@pytest.mark.slow
async def test_estimate_is_within_ten_percent_of_the_run(tmp_path: Path, db_url: str) -> None:
    template = demo_template(tmp_path / "template")
    lines = (template / "slides.csv").read_text().splitlines()
    pilot_manifest = template / "pilot.csv"
    pilot_manifest.write_text("\n".join(lines[:1] + lines[2:3]) + "\n")  # the slide w/o report
    with run_mock_server() as srv:
        # a pilot run tells the estimate how long this model's answers are
        pilot = settings_for(_config(tmp_path, db_url, srv.base_url, "pilot", pilot_manifest))
        await run_pipeline(pilot, read_manifest(pilot_manifest), show_progress=False)

        settings = settings_for(_config(tmp_path, db_url, srv.base_url, "target", None))
        entries = read_manifest(settings.run.manifest)
        await run_pipeline(
            settings, entries, stages=["tile", "embed", "select"], show_progress=False
        )
        engine = await open_store(settings)
        try:
            est = await estimate_run(engine, settings, entries, "target")
            await store_estimate(engine, est)
        finally:
            await engine.dispose()
        config = str(tmp_path / "target" / "pathgen.toml")
        cli = await asyncio.to_thread(CliRunner().invoke, app, ["estimate", config, "--json"])
        assert cli.exit_code == 0, cli.output
        shown = json.loads(cli.output)
        assert shown["total_cost"] == pytest.approx(est.total_cost)
        assert [s["calls"] for s in shown["stages"]] == [s.calls for s in est.stages]
        summary = await run_pipeline(settings, entries, show_progress=False)
        assert summary.outcome.code == ExitCode.OK
    engine = await open_store(settings)
    try:
        actual = await actual_usage(engine, "target")
        assert await stored_estimate(engine, "target") == est
    finally:
        await engine.dispose()
    assert est.basis == "selections" and est.tiles > 0
    by_stage = {s.stage: s for s in est.stages}
    assert sorted(by_stage) == sorted(PAID)
    for stage in PAID:
        e, a = by_stage[stage], actual[stage]
        assert e.calls == a.calls, stage
        assert e.input_tokens == pytest.approx(a.input_tokens, rel=0.10), stage
        assert e.output_tokens == pytest.approx(a.output_tokens, rel=0.10), stage
        assert e.cost == pytest.approx(a.cost, rel=0.10), stage
        assert e.output_basis == "stored calls"
    total = sum(a.cost for a in actual.values())
    assert est.total_cost == pytest.approx(total, rel=0.10)
    assert est.total_batch_cost == pytest.approx(est.total_cost / 2)

    args = ["-c", str(tmp_path / "target" / "pathgen.toml"), "status"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    assert "estimate of run target" in result.output and "actual cost" in result.output


async def test_estimate_from_stored_tiles_caps_each_slide(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    paths = [str(tmp_path / f"s{i}.svs") for i in range(5)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\n" + "\n".join(paths) + "\n")
    settings = Settings.model_validate(
        {
            "selection": {"top_k": 4, "max_diverse": 6},
            "captioning": {"describe": {"provider": "openai", "model": "m"}},
        }
    )
    tiles = [3, 50, 0, 10, 11]
    async with session_scope(engine) as s:
        for path, n in zip(paths[:4], tiles, strict=False):
            slide = Slide(path=path, status="done")
            s.add(slide)
            await s.flush()
            rows = [
                {
                    "slide_id": slide.id,
                    "x": i,
                    "y": 0,
                    "size": 1,
                    "read_level": 0,
                    "mpp": 0.5,
                    "tile_px": 336,
                    "tissue_fraction": 1.0,
                }
                for i in range(n)
            ]
            if rows:
                await s.execute(insert(Tile), rows)
    est = await estimate_run(engine, settings, read_manifest(manifest), "new")
    cap = selection_cap(settings, report=False)
    assert cap == 10
    # s0: 3 tiles; s1: capped; s2: tiled, none (not stored: cap); s3: 10; s4: not tiled: cap
    assert est.basis == "tiles"
    assert est.tiles == 3 + 10 + 10 + 10 + 10
    (describe,) = est.stages
    assert describe.calls == est.tiles and describe.output_basis == "max_tokens / 2"
