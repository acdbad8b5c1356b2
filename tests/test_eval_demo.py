"""``pathgen eval`` on the run that ``pathgen demo`` produces (synthetic slides, tiny CLIP)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app


@pytest.mark.slow
def test_eval_on_demo_run(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--dir", str(demo), "--log-format", "json"])
    assert result.exit_code == 0, result.output
    config = demo / "pathgen.toml"
    with sqlite3.connect(demo / "pathgen.db") as db:
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
        degrade_pairs = db.execute(
            "SELECT count(*) FROM caption_revisions r JOIN caption_revisions g "
            "ON r.parent_id = g.id WHERE r.stage = 'revise' AND r.status = 'ok' "
            "AND g.stage = 'degrade' AND g.status = 'ok'"
        ).fetchone()[0]
        captioned = db.execute(
            "SELECT count(DISTINCT tile_id) FROM caption_revisions WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
    # the commands it suggests are whole lines, to copy and paste (not wrapped at 80 columns)
    assert f"-c {config} status {run_id}\n" in result.output
    assert f"-c {config} serve\n" in result.output

    out = tmp_path / "report"
    result = runner.invoke(
        app, ["-c", str(config), "eval", run_id, "--out", str(out), "--text-model", "clip"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tiles"]["captioned"] == captioned > 0
    assert metrics["tiles"]["embedded"] == captioned
    stages = {name.split("/")[0] for name in metrics["groups"]}
    assert {"describe", "revise", "summarize", "final"} <= stages
    assert metrics["recovery"]["degraded"]["pairs"] == degrade_pairs > 0
    by_op = metrics["recovery"]["degraded"]["by_op"]
    assert sum(v["made"] for v in by_op.values()) == metrics["recovery"]["degraded"]["edits_made"]
    final = metrics["groups"]["final"]
    assert final["clip_score"]["n"] == captioned
    assert final["near_duplicate_embedder"].startswith("clip:")
    instruct = metrics["instruct"]  # the demo enables the instruct stage
    assert instruct["items"] > 0 and instruct["failed"] == 0
    assert 0.45 <= instruct["yes_no"]["yes_share"] <= 0.55
    assert all(b["items"] > 0 for b in instruct["by_kind"].values())
    assert re.search(r"instruct: \d+ items .* yes/no answers \d+\.\d% yes", result.output)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>") and "recovery-table" in html
    assert "instruct-table" in html
    assert all(p.stat().st_size > 0 for p in (out / "plots").glob("*.png"))
