"""The live progress table is for a terminal: piped to a log, `pathgen run` does not write a
stale, unterminated copy of it to stderr (the summary prints the final table)."""

from __future__ import annotations

import asyncio

import pytest

from pathgen.runs.progress import report_until


async def test_no_live_table_when_stderr_is_not_a_terminal(
    engine, capsys: pytest.CaptureFixture[str]
) -> None:
    done = asyncio.Event()
    task = asyncio.create_task(report_until(engine, "some-run", done, interval=0.05))
    await asyncio.sleep(0.2)
    done.set()
    await task
    assert capsys.readouterr().err == ""
