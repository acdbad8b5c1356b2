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
    # The first call proves the endpoint; every later one hangs, so the server soon holds a
    # fixed set of calls (describe's limit among them) and nothing moves while the run goes
    # on (with only HUNG hung calls, a describe slot left free by a hung revise kept
    # cycling). Then the run is stopped.
    plan = [None, *["hang:600"] * 60]
    stop = asyncio.Event()
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
            run_pipeline(
                settings,
                read_manifest(settings.run.manifest),
                show_progress=False,
                stop=stop,
                grace_s=0.5,
            )
        )
        log = tmp_path / "status.log"
        try:
            seen: list[dict] = []
            for _ in range(600):
                seen.append(srv.stats()["by_model"])
                if seen[-1].get("describe") == HUNG and seen[-20:] == [seen[-1]] * 20:
                    break  # describe full and nothing moved for 2 s
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the hung calls never settled at the server: {seen[-1]}")
            await asyncio.sleep(1.5)  # a beat
            before = srv.stats()["by_model"]
            shown = await _status(config, log)
            at_server = srv.stats()["by_model"]
            assert at_server == before == seen[-1]  # nothing moved
            # Per stage (the model is the stage's name here), what the server holds.
            assert {s: v["calls_in_flight"] for s, v in shown.items() if v["calls_in_flight"]} == (
                at_server
            )
            stop.set()
            summary = await asyncio.wait_for(run, 60)
        finally:
            if not run.done():
                run.cancel()
    assert summary.outcome.code == ExitCode.INTERRUPTED
    after = await _status(config, log)
    assert all(s["calls_in_flight"] is None for s in after.values())  # the worker's rows went
