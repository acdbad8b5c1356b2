"""Scale-out: four worker processes on one Postgres database, one of them killed mid-item."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from sqlalchemy import select

from pathgen.runs import registry
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import open_store
from pathgen.store.engine import session_scope
from pathgen.store.models import WorkItem
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import (
    demo_template,
    kill9,
    pipeline_config,
    result_counts,
    settings_for,
    start_pathgen,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def backend() -> str:  # this scenario is about many machines on one Postgres
    return "postgres"


async def _leases_by_pid(engine, pid: int) -> list[int]:
    prefix = f"{socket.gethostname()}:{pid}:"
    async with session_scope(engine) as s:
        rows = await s.scalars(
            select(WorkItem.id).where(
                WorkItem.status == "leased",
                WorkItem.lease_owner.startswith(prefix),
                WorkItem.stage.in_(["describe", "revise", "summarize"]),
            )
        )
        return list(rows)


async def test_four_workers_disjoint_and_a_killed_workers_items_are_finished(
    tmp_path: Path, db_url: str
) -> None:
    template = demo_template(tmp_path / "template")
    with run_mock_server(latency=0.4) as srv:
        stage = (
            f'provider = "openai"\nmodel = "mock-vlm"\nbase_url = "{srv.base_url}"\n'
            'api_key_env = ""\n'
            "max_concurrency = 4\ntimeout_s = 10\n"
        )
        extra = (
            "[workers]\nlease_s = 4\nmax_attempts = 5\n"
            f"[captioning.describe]\n{stage}[captioning.revise]\n{stage}"
            f"[captioning.summarize]\n{stage}"
        )
        config = pipeline_config(template, tmp_path / "work", db_url, extra)
        settings = settings_for(config)
        engine = await open_store(settings)
        try:
            await registry.ensure_run(engine, "demo", settings)
            await registry.add_slides(
                engine, "demo", read_manifest(settings.run.manifest), max_attempts=5
            )
            logs = [tmp_path / f"worker{i}.log" for i in range(4)]
            args = [
                "-c",
                str(config),
                "worker",
                "--run",
                "demo",
                "--exit-when-idle",
                "--grace-s",
                "5",
            ]
            procs = [start_pathgen(args, log) for log in logs]
            victim = procs[0]

            async def victim_busy() -> bool:
                return len(await _leases_by_pid(engine, victim.pid)) >= 2

            assert await wait_for(victim_busy, timeout=240, interval=0.05), logs[0].read_text()
            held = await _leases_by_pid(engine, victim.pid)
            kill9(victim)

            for proc, log in zip(procs[1:], logs[1:], strict=True):
                rc = await asyncio.to_thread(proc.wait, 400)
                assert rc == 0, log.read_text()[-3000:]

            async with session_scope(engine) as s:
                items = list(await s.scalars(select(WorkItem).where(WorkItem.run_id == "demo")))
            served = srv.count()
        finally:
            await engine.dispose()

    assert items and all(i.status == "done" for i in items), [
        (i.stage, i.key, i.status, i.last_error) for i in items if i.status != "done"
    ]
    by_id = {i.id: i for i in items}
    assert held and all(by_id[i].attempts >= 2 for i in held), "killed worker's items redone"
    counts = await result_counts(db_url, "demo")
    assert counts["total_revisions"] == counts["distinct_revisions"], "an item ran twice"
    kept = counts["kept"]
    assert counts["revisions"]["describe/caption/ok"] == kept
    assert counts["revisions"]["summarize/caption/ok"] == kept
    assert counts["revisions"]["revise/caption/ok"] == kept
    # The mock server saw each caption request once per completed item, plus redone ones.
    assert served >= 3 * kept
