"""Starting many workers at once on a new database, and what ``status`` says after a kill.

Four ``pathgen worker`` processes started together on an empty Postgres database: one
migrates (under an advisory lock), the others wait and find the schema at head; then a
run's work gets done by them. A ``pathgen run`` killed with SIGKILL reads "interrupted",
and a run finished only by ``pathgen worker`` processes reads "completed".
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import text

from pathgen.store import migrate
from pathgen.store.engine import make_engine
from tests.dbutil import postgres_database
from tests.pipeline_helpers import (
    PATHGEN,
    demo_template,
    item_count,
    kill9,
    pipeline_config,
    start_pathgen,
    wait_for,
)

pytestmark = pytest.mark.slow
CAPTION = "describe,degrade,revise,summarize,instruct"  # the demo config makes instruct items


def _small(config: Path) -> Path:
    """A few selected tiles per slide: the point is starting and finishing, not volume."""
    text = config.read_text().replace("top_k = 8", "top_k = 2")
    config.write_text(text.replace("max_diverse = 16", "max_diverse = 2"))
    return config


async def _status(config: Path, tmp_path: Path) -> dict:
    proc = await asyncio.create_subprocess_exec(
        PATHGEN, "-c", str(config), "status", "demo", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.postgres
async def test_four_workers_start_together_on_a_new_database(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "template")
    async with postgres_database() as url:
        config = _small(pipeline_config(template, tmp_path / "work", url))
        logs = [tmp_path / f"worker{i}.log" for i in range(4)]
        args = ["-c", str(config), "worker", "--stages", CAPTION, "--grace-s", "5"]
        workers = [start_pathgen(args, log) for log in logs]  # all at once, no schema yet
        engine = make_engine(url)
        try:

            async def at_head() -> bool:
                try:
                    return await migrate.current(engine) == migrate.head()
                except Exception:  # noqa: BLE001 - no schema yet
                    return False

            assert await wait_for(at_head, timeout=300, interval=0.2)
            run = start_pathgen(["-c", str(config), "run", "--stages", "tile,embed,select"],
                                tmp_path / "run.log")  # fmt: skip
            assert await asyncio.to_thread(run.wait, 600) == 0, (tmp_path / "run.log").read_text()

            async def captions_done() -> bool:
                for stage in CAPTION.split(","):
                    if await item_count(url, stage, ("queued", "leased")):
                        return False
                return await item_count(url, "summarize", ("done",)) > 0

            assert await wait_for(captions_done, timeout=600, interval=0.5), [
                log.read_text()[-2000:] for log in logs
            ]
            async with engine.connect() as conn:
                versions = (await conn.execute(text("SELECT * FROM alembic_version"))).all()
            assert versions == [(migrate.head(),)]
            status = await _status(config, tmp_path)
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes = [await asyncio.to_thread(proc.wait, 120) for proc in workers]
            await engine.dispose()
    texts = [log.read_text() for log in logs]
    assert all("Traceback" not in t for t in texts), texts
    upgraded = [t for t in texts if "database schema upgraded from empty" in t]
    assert len(upgraded) == 1, texts  # one migrated, three waited and found it at head
    assert codes == [130, 130, 130, 130]  # stopped by a signal: "interrupted", documented
    assert status["status"] == "completed" and status["totals"]["failed"] == 0


async def test_killed_run_reads_interrupted_and_workers_finish_it(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "template")
    db = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    config = _small(pipeline_config(template, tmp_path / "work", db))
    run = start_pathgen(["-c", str(config), "run", "--log-format", "json"], tmp_path / "run.log")

    async def captioning() -> bool:
        return await item_count(db, "describe", ("leased", "done")) >= 1

    assert await wait_for(captioning, timeout=600), (tmp_path / "run.log").read_text()[-3000:]
    kill9(run)
    assert (await _status(config, tmp_path))["status"] == "interrupted"

    worker = start_pathgen(
        ["-c", str(config), "worker", "--run", "demo", "--exit-when-idle"], tmp_path / "w.log"
    )
    assert await asyncio.to_thread(worker.wait, 600) == 0, (tmp_path / "w.log").read_text()
    status = await _status(config, tmp_path)
    assert status["status"] == "completed"  # finished by a worker, not by `pathgen run`
    assert status["totals"]["failed"] == 0 and status["totals"]["done"] > 0
