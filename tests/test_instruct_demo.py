"""The demo run with ``instruct`` enabled: every type stored with provenance, balanced yes/no
answers, ``pathgen show`` lists items under their revision, ``pathgen eval`` reports them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.eval.gather import load_run_data
from pathgen.eval.instruct_metrics import instruct_summary
from pathgen.exitcodes import ExitCode
from pathgen.runs.demo import prepare_demo
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.settings import load_settings
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.instruct import current_items
from pathgen.types import INSTRUCT_KINDS


async def test_demo_run_makes_balanced_verified_items(tmp_path: Path) -> None:
    config = prepare_demo(tmp_path / "demo")
    settings = load_settings(config)
    summary = await run_pipeline(
        settings, read_manifest(settings.run.manifest), show_progress=False
    )
    assert summary.outcome.code == ExitCode.OK
    engine = make_engine(settings.database.url)
    try:
        async with session_scope(engine) as s:
            items = await current_items(s, summary.run_id)
        data = await load_run_data(engine, summary.run_id)
    finally:
        await engine.dispose()
    assert {i.kind for i in items} == set(INSTRUCT_KINDS)
    assert all(i.provider and i.model and i.template_name and i.template_hash for i in items)
    assert all(i.verify_status == "passed" and i.verifier == "rules" for i in items)
    metrics = instruct_summary(data.instruct)
    assert metrics["yes_no"]["passed"] >= 20
    assert 0.45 <= metrics["yes_no"]["yes_share"] <= 0.55
    assert metrics["by_kind"]["label"]["items"] > 0 and metrics["failed"] == 0

    tile = items[0].tile_id
    runner = CliRunner()
    shown = await asyncio.to_thread(runner.invoke, app, ["-c", str(config), "show", str(tile)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    first = next(n for n, line in enumerate(lines) if "instruct #" in line)
    revise = max(n for n, line in enumerate(lines[:first]) if " revise " in line)
    assert "chain 1 (caption)" in "\n".join(lines[:revise])
    as_json = await asyncio.to_thread(
        runner.invoke, app, ["-c", str(config), "show", str(tile), "--json"]
    )
    steps = json.loads(as_json.output)["chains"][0]
    source = next(s for s in steps if s["instruct"])
    assert source["stage"] == "revise"
    assert {i["kind"] for i in source["instruct"]} == set(INSTRUCT_KINDS)
