"""``pathgen status`` printed to a pipe or a log: nothing is cut to ``descri…``."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, WorkItem

LONG_ERROR = (
    "ProviderError: openai: request rejected (HTTP 400): the image is larger than the "
    "model accepts; lower image_max_side for this stage and retry the parked items"
)


async def test_status_to_a_pipe_is_not_cropped(engine, db_url: str, tmp_path, monkeypatch) -> None:
    async with session_scope(engine) as s:
        s.add(Run(id="wide", config={}, status="paused", pathgen_version="t"))
        await s.flush()
        rows = [("describe", "failed", LONG_ERROR), ("summarize", "done", None)]
        for i, (stage, status, error) in enumerate(rows):
            s.add(WorkItem(run_id="wide", stage=stage, key=str(i), status=status, last_error=error))
    monkeypatch.setenv("PATHGEN_DB_URL", db_url)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLUMNS", raising=False)
    res = await asyncio.to_thread(CliRunner().invoke, app, ["status", "wide"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "…" not in out, out
    assert "│ describe  │" in out and "│ summarize │" in out
    assert "pathgen run wide (parked)" in out  # nothing left but parked items
    assert LONG_ERROR in out  # the parked item's error, whole, on one line
