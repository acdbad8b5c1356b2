"""How a run ended, read from the queue: exit code, status, per-stage summary."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from pathgen.exitcodes import ExitCode
from pathgen.runs.outcome import effective_status, run_outcome
from pathgen.runs.owner import _host, lease_holders, new_owner, owner_alive
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, WorkItem, utcnow


def _dead_owner() -> str:
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return f"{_host()}:{proc.stdout.strip()}:cafe"


async def _items(engine, rows: list[tuple[str, str, str | None]], **extra) -> None:  # noqa: ANN001
    async with session_scope(engine) as s:
        s.add(Run(id="r", config={}, status="running", pathgen_version="t"))
        await s.flush()
        for i, (stage, status, error) in enumerate(rows):
            s.add(
                WorkItem(
                    run_id="r", stage=stage, key=str(i), status=status, last_error=error, **extra
                )
            )


async def test_all_done_is_ok_and_completed(engine) -> None:
    await _items(engine, [("describe", "done", None)] * 2)
    out = await run_outcome(engine, "r", ["describe"], interrupted=False)
    assert (out.code, out.status, out.lines()) == (ExitCode.OK, "completed", [])
    assert out.last_line() == "run r completed: every item done"


async def test_parked_items_give_3_with_distinct_errors_counted(engine) -> None:
    rows = [
        ("describe", "done", None),
        ("describe", "failed", "ProviderError: HTTP 400 bad image"),
        ("describe", "failed", "Refused: content filter"),
        ("describe", "failed", "ProviderError: HTTP 400 bad image"),
        ("summarize", "done", None),
    ]
    await _items(engine, rows)
    out = await run_outcome(engine, "r", ["describe", "summarize"], interrupted=False)
    assert out.code == ExitCode.PARKED and out.status == "parked"
    assert out.lines() == [
        "describe: 3 parked (1 done)",
        "  2 x ProviderError: HTTP 400 bad image",
        "  1 x Refused: content filter",
    ]
    assert "finished with 3 parked item(s) (exit 3)" in out.last_line()


async def test_work_nobody_takes_gives_4_and_says_why(engine) -> None:
    rows = [
        ("describe", "done", None),
        ("describe", "queued", "stage paused: openai HTTP 404 model not found"),
        ("describe", "failed", "x"),
    ]
    await _items(engine, rows)
    out = await run_outcome(engine, "r", ["describe"], interrupted=False)
    assert out.code == ExitCode.STALLED and out.status == "stalled"
    assert (
        "describe: 1 not done, and no worker can take them: "
        "stage paused: openai HTTP 404 model not found"
    ) in out.lines()
    stopped = await run_outcome(engine, "r", ["describe"], interrupted=True)
    assert stopped.code == ExitCode.INTERRUPTED and stopped.status == "interrupted"
    assert all("not done" not in line for line in stopped.lines())


async def test_stages_not_run_here_leave_the_run_paused(engine) -> None:
    await _items(engine, [("tile", "done", None), ("embed", "queued", None)])
    out = await run_outcome(engine, "r", ["tile"], interrupted=False)
    assert out.code == ExitCode.OK and out.status == "paused"
    assert "every item of tile done; other stages have work left" in out.last_line()


async def test_lease_holders_tell_dead_local_processes(engine) -> None:
    dead, alive = _dead_owner(), new_owner()
    assert owner_alive(dead) is False and owner_alive(alive) is True
    assert owner_alive("elsewhere:123:abc") is None and owner_alive(None) is None
    soon = utcnow() + timedelta(seconds=300)
    leased = {"lease_expires_at": soon, "lease_owner": f"{dead}:claim1"}
    await _items(engine, [("describe", "leased", None)] * 2, **leased)
    assert await lease_holders(engine, "r") == (0, 1)  # two leases, one dead process
    async with session_scope(engine) as s:
        s.add(WorkItem(run_id="r", stage="revise", key="x", status="leased",
                       lease_expires_at=soon, lease_owner=f"{alive}:claim2"))  # fmt: skip
    assert await lease_holders(engine, "r") == (1, 1)


@pytest.mark.parametrize(
    ("stored", "counts", "kw", "shown"),
    [
        ("paused", {"describe": {"done": 3}}, {}, "completed"),  # finished by workers
        ("running", {"describe": {"done": 2, "failed": 1}}, {}, "parked"),
        ("running", {"describe": {"queued": 2}}, {"owner_alive": False}, "interrupted"),
        ("running", {"describe": {"leased": 2}}, {"dead_holders": 1}, "interrupted"),
        ("running", {"describe": {"leased": 2}}, {"dead_holders": 1, "owner_alive": True},
         "running"),
        ("paused", {"describe": {"leased": 2}}, {"live_holders": 2}, "running"),
        ("running", {"describe": {"queued": 2}}, {}, "running"),  # cannot tell: as stored
        ("stalled", {"describe": {"queued": 2}}, {}, "stalled"),
    ],
)  # fmt: skip
def test_effective_status(stored: str, counts: dict, kw: dict, shown: str) -> None:
    assert effective_status(stored, counts, **kw) == shown
