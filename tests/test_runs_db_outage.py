"""A database outage mid-run (Postgres restarting, a network blip) does not kill the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.dbutil import postgres_database
from tests.pipeline_helpers import (
    demo_template,
    item_count,
    kill9,
    pipeline_config,
    result_counts,
    start_pathgen,
    wait_for,
)
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


async def test_run_survives_a_database_outage(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "template")
    async with postgres_database() as direct_url:
        url = make_url(direct_url)
        async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False
            )
            config = pipeline_config(template, tmp_path / "work", via_proxy)
            log = tmp_path / "run.log"
            proc = start_pathgen(["run", str(config), "--log-format", "json"], log)
            try:

                async def captioning() -> bool:
                    done = await item_count(direct_url, "describe", ("done",))
                    return proc.poll() is not None or done >= 2

                assert await wait_for(captioning, timeout=240, interval=0.05)
                assert proc.poll() is None, log.read_text()[-3000:]
                await proxy.cut()  # the database goes away for a few seconds
                await asyncio.sleep(4)
                assert proc.poll() is None, (
                    "the run died with the database:\n" + (log.read_text()[-3000:])
                )
                await proxy.restore()
                rc = await asyncio.to_thread(proc.wait, 300)
            finally:
                kill9(proc)
            assert rc == 0, log.read_text()[-3000:]
        counts = await result_counts(direct_url, "demo")
    assert all(k.endswith("/done") for k in counts["items"]), counts["items"]
    assert counts["total_revisions"] == counts["distinct_revisions"]
    assert "database" in log.read_text()  # the outage was reported, not hidden
