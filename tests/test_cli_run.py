"""`pathgen run` through the CLI: --redo/--force reach the pipeline; bad options are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app
from tests.pipeline_helpers import demo_template, pipeline_config

pytestmark = pytest.mark.slow


async def test_run_then_redo_with_force(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "template")
    config = pipeline_config(template, tmp_path / "w", f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    runner = CliRunner()
    first = await asyncio.to_thread(
        runner.invoke, app, ["run", str(config), "--log-format", "json"]
    )
    assert first.exit_code == 0, first.output
    assert '"event": "summary"' in first.output and "run demo completed" in first.output
    again = await asyncio.to_thread(
        runner.invoke,
        app,
        ["run", str(config), "--log-format", "json", "--redo", "summarize", "--force"],
    )
    assert again.exit_code == 0, again.output
    bad = await asyncio.to_thread(runner.invoke, app, ["run", str(config), "--force"])
    assert bad.exit_code == 2 and "--force only applies with --redo" in bad.output
    bad = await asyncio.to_thread(runner.invoke, app, ["run", str(config), "--redo", "tile"])
    assert bad.exit_code == 2 and "can be redone, not ['tile']" in bad.output
