"""Whole-pipeline runs: streaming stages, resume after kill -9, idempotent reruns, faults."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from pathgen.exitcodes import ExitCode
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.store.engine import make_engine
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import (
    demo_template,
    item_count,
    kill9,
    pipeline_config,
    result_counts,
    settings_for,
    start_pathgen,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_template(tmp_path_factory.mktemp("demo-template"))


@pytest.fixture(scope="session")
def reference_counts(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted run on SQLite: what every other run must end with."""
    work = tmp_path_factory.mktemp("reference")
    config = pipeline_config(template, work, f"sqlite+aiosqlite:///{work / 'ref.db'}")
    settings = settings_for(config)

    async def go() -> dict:
        summary = await run_pipeline(
            settings, read_manifest(settings.run.manifest), show_progress=False
        )
        assert summary.outcome.code == ExitCode.OK
        return await result_counts(settings.database.url, summary.run_id)

    return asyncio.run(go())


def test_reference_run_is_complete(reference_counts: dict) -> None:
    c = reference_counts
    assert c["tiles"] > 20 and c["kept"] > 0
    kept = c["kept"]
    assert c["revisions"]["describe/caption/ok"] == kept
    assert c["revisions"]["summarize/caption/ok"] == kept
    assert c["revisions"]["degrade/degraded/ok"] == kept
    assert c["revisions"]["revise/degraded/ok"] == kept
    assert c["total_revisions"] == c["distinct_revisions"]
    assert all(k.endswith("/done") for k in c["items"]), c["items"]


async def test_rerun_does_nothing_twice(
    template: Path, tmp_path: Path, db_url: str, reference_counts: dict
) -> None:
    config = pipeline_config(template, tmp_path, db_url)
    settings = settings_for(config)
    entries = read_manifest(settings.run.manifest)
    first = await run_pipeline(settings, entries, show_progress=False)
    again = await run_pipeline(settings, entries, show_progress=False)
    assert first.run_id == again.run_id and not again.created
    assert again.stats.done == 0
    assert await result_counts(db_url, first.run_id) == reference_counts


@pytest.mark.parametrize(
    ("stage", "statuses", "at_least"),
    [("tile", ("leased",), 1), ("embed", ("leased", "done"), 1), ("describe", ("done",), 3)],
    ids=["during-tiling", "during-embedding", "during-captioning"],
)
async def test_kill9_then_rerun_matches_uninterrupted(
    template: Path,
    tmp_path: Path,
    db_url: str,
    reference_counts: dict,
    stage: str,
    statuses: tuple[str, ...],
    at_least: int,
) -> None:
    config = pipeline_config(template, tmp_path, db_url)
    log = tmp_path / "run.log"
    proc = start_pathgen(["run", str(config), "--log-format", "json"], log)
    try:

        async def reached_or_exited() -> bool:
            return proc.poll() is not None or await _reached(db_url, stage, statuses, at_least)

        assert await wait_for(reached_or_exited, timeout=180, interval=0.02)
        assert proc.poll() is None, f"run exited early:\n{log.read_text()[-3000:]}"
    finally:
        kill9(proc)
    assert proc.returncode == -9

    rerun = start_pathgen(["run", str(config), "--log-format", "json"], log)
    rc = await asyncio.to_thread(rerun.wait, 300)
    assert rc == 0, log.read_text()[-3000:]
    assert await result_counts(db_url, "demo") == reference_counts


async def _reached(db_url: str, stage: str, statuses: tuple[str, ...], at_least: int) -> bool:
    return await item_count(db_url, stage, statuses) >= at_least


async def test_status_command_reports_counts(template: Path, tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    config = pipeline_config(template, tmp_path, db_url)
    settings = settings_for(config)
    await run_pipeline(settings, read_manifest(settings.run.manifest), show_progress=False)
    log = tmp_path / "status.log"
    proc = start_pathgen(["-c", str(config), "status", "demo", "--json"], log)
    assert await asyncio.to_thread(proc.wait, 120) == 0
    data = json.loads(log.read_text().strip().splitlines()[-1])
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["summarize"]["done"] > 0 and data["totals"]["failed"] == 0


async def test_twenty_percent_llm_faults_end_done_or_parked(
    template: Path, tmp_path: Path, db_url: str
) -> None:
    import random

    rng = random.Random(7)
    kinds = ["500", "429", "malformed", "empty", "refusal"]
    plan = [rng.choice(kinds) if rng.random() < 0.2 else None for _ in range(2000)]
    with run_mock_server(latency=0.01, retry_after=0.05, fault_plan=plan) as srv:
        stage_cfg = (
            f'provider = "openai"\nmodel = "mock-vlm"\nbase_url = "{srv.base_url}"\n'
            'api_key_env = ""\n'
            "max_attempts = 2\ntimeout_s = 5\nmax_concurrency = 8\n"
        )
        extra = (
            "[workers]\nmax_attempts = 2\nlease_s = 30\n"
            f"[captioning.describe]\n{stage_cfg}[captioning.revise]\n{stage_cfg}"
            f"[captioning.summarize]\n{stage_cfg}"
        )
        text = pipeline_config(template, tmp_path, db_url).read_text()
        config = tmp_path / "faults.toml"
        config.write_text(text + extra)
        settings = settings_for(config)
        summary = await run_pipeline(
            settings, read_manifest(settings.run.manifest), show_progress=False
        )
        assert srv.count() > 0
    assert summary.outcome.finished
    assert summary.outcome.code == ExitCode.PARKED
    prog = {s.stage: s for s in summary.outcome.stages}
    llm = [prog[s] for s in ("describe", "revise", "summarize")]
    assert all(s.unfinished == 0 for s in llm)
    assert sum(s.parked for s in llm) > 0, "faults should park some items"
    assert sum(s.done for s in llm) > 0

    from pathgen.runs.report import parked_items

    engine = make_engine(db_url)
    try:
        parked = await parked_items(engine, summary.run_id, limit=1000)
    finally:
        await engine.dispose()
    assert parked and all(p.error for p in parked)

    log = tmp_path / "status.log"
    proc = start_pathgen(["-c", str(config), "status", summary.run_id, "--json"], log)
    assert await asyncio.to_thread(proc.wait, 120) == 0
    data = json.loads(log.read_text().strip().splitlines()[-1])
    assert data["totals"]["failed"] == sum(s.parked for s in summary.outcome.stages)
    assert len(data["parked"]) > 0
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
