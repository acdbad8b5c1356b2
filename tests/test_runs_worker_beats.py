"""`pathgen status` shows the provider calls in flight that the server sees."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pathgen.exitcodes import ExitCode
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import demo_template, pipeline_config, settings_for, start_pathgen

pytestmark = pytest.mark.slow

HUNG = 5


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_template(tmp_path_factory.mktemp("demo-template"))


async def _status(config: Path, log: Path) -> dict:
    log.write_text("")
    proc = start_pathgen(["-c", str(config), "status", "demo", "--json"], log)
    assert await asyncio.to_thread(proc.wait, 120) == 0, log.read_text()
    data = json.loads(log.read_text().strip().splitlines()[-1])
    return {s["stage"]: s for s in data["stages"]}


async def test_status_counts_the_calls_at_the_server(
    template: Path, tmp_path: Path, db_url: str
) -> None:
    # The first call proves the endpoint; the next HUNG hang 40 s: describe's limit is full
    # and the server holds exactly HUNG requests while the run goes on.
    plan = [None, *["hang:40"] * HUNG]
    with run_mock_server(latency=0.05, fault_plan=plan, keep_bodies=False) as srv:
        stage = (
            f'provider = "openai"\nmodel = "{{name}}"\nbase_url = "{srv.base_url}"\n'
            f'api_key_env = ""\nmax_concurrency = {HUNG}\ntimeout_s = 90\n'
        )
        extra = "".join(
            f"[captioning.{s}]\n" + stage.replace("{name}", s)
            for s in ("describe", "revise", "summarize")
        )
        text = pipeline_config(template, tmp_path, db_url).read_text()
        config = tmp_path / "hang.toml"
        config.write_text(text + "[workers]\ncaption_processes = 1\n" + extra)
        settings = settings_for(config)
        run = asyncio.create_task(
            run_pipeline(settings, read_manifest(settings.run.manifest), show_progress=False)
        )
        log = tmp_path / "status.log"
        try:
            for _ in range(600):
                if srv.stats()["in_flight"] == HUNG:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the hung calls never reached the server")
            await asyncio.sleep(1.5)  # a beat
            before = srv.stats()["by_model"]
            shown = await _status(config, log)
            at_server = srv.stats()["by_model"]
            assert at_server == before and sum(at_server.values()) == HUNG  # nothing moved
            # Per stage (the model is the stage's name here), what the server holds; most
            # are describe calls (a revise of the first tile may have drawn a hung slot).
            assert {s: v["calls_in_flight"] for s, v in shown.items() if v["calls_in_flight"]} == (
                at_server
            )
            assert at_server["describe"] >= HUNG - 1
            summary = await run
        finally:
            if not run.done():
                run.cancel()
    assert summary.outcome.code == ExitCode.OK
    after = await _status(config, log)
    assert all(s["calls_in_flight"] is None for s in after.values())  # the worker's rows went
