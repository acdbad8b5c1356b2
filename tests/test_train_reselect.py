"""The loop on the demo: build → train-clip → run --redo select with the new model → eval
compares the two selections."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app

pytestmark = pytest.mark.slow


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _final_tiles(db_url: str, run_id: str) -> set[int]:
    from pathgen.store.captions import final_captions
    from pathgen.store.engine import make_engine, session_scope

    async def go() -> set[int]:
        engine = make_engine(db_url)
        try:
            async with session_scope(engine) as session:
                return set(await final_captions(session, run_id))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_reselect_with_the_trained_model_and_compare(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    _invoke("demo", "--dir", str(demo), "--log-format", "json")
    config = str(demo / "pathgen.toml")
    db = sqlite3.connect(demo / "pathgen.db")
    (run_id,) = db.execute("SELECT id FROM runs").fetchone()

    def kept(round_no: int) -> set[int]:
        rows = db.execute(
            "SELECT tile_id FROM selections WHERE run_id = ? AND round = ? AND kept",
            (run_id, round_no),
        )
        return {t for (t,) in rows}

    def describes() -> dict[int, int]:
        rows = db.execute(
            "SELECT tile_id, count(*) FROM caption_revisions WHERE run_id = ? "
            "AND stage = 'describe' GROUP BY tile_id",
            (run_id,),
        )
        return dict(rows.fetchall())

    before, described_before = kept(0), describes()
    assert before and set(described_before) == before

    trained = tmp_path / "trained"
    _invoke(
        "-c", config, "train-clip", run_id, "--out", str(trained),
        "--epochs", "1", "--batch-size", "8", "--lr", "1e-4", "--device", "cpu",
    )  # fmt: skip
    weights = trained / "model" / "open_clip_model.safetensors"

    _invoke(
        "-c", config, "run", "--redo", "select", "--model-pretrained", str(weights),
        "--log-format", "json",
    )  # fmt: skip
    rounds = {
        r: json.loads(s)["model"]["pretrained"]
        for r, s in db.execute(
            "SELECT round, settings FROM selection_rounds WHERE run_id = ?", (run_id,)
        )
    }
    assert rounds[1] == str(weights) and rounds[0] != str(weights)
    after = kept(1)
    assert after, "the new round kept no tile"
    made_with = dict(
        db.execute("SELECT DISTINCT round, model_fingerprint FROM selections").fetchall()
    )
    assert len(made_with) == 2 and made_with[0] != made_with[1]
    assert db.execute("SELECT count(DISTINCT model_fingerprint) FROM embeddings").fetchone()[0] == 2
    described_after = describes()
    # every tile the new round keeps is described; tiles kept before were not described again
    assert after <= set(described_after)
    assert all(described_after[t] == described_before[t] for t in before)
    assert (
        db.execute(
            "SELECT count(*) FROM work_items WHERE run_id = ? AND status != 'done'", (run_id,)
        ).fetchone()[0]
        == 0
    )
    # the dataset follows the current selection: dropped tiles have no final caption
    finals = _final_tiles(f"sqlite+aiosqlite:///{demo / 'pathgen.db'}", run_id)
    assert finals <= after and finals == after & set(described_after)

    report = tmp_path / "report"
    out = _invoke(
        "-c", config, "eval", run_id, "--out", str(report), "--text-model", "clip",
        "--compare-selection", f"{run_id}@0",
    )  # fmt: skip
    assert f"{run_id}@0 kept {len(before)}" in out
    sel = json.loads((report / "metrics.json").read_text())["selection"]
    assert (sel["a"]["kept"], sel["b"]["kept"]) == (len(before), len(after))
    assert sel["overlap"]["both"] == len(before & after)
    assert sel["b"]["model"]["pretrained"] == str(weights)
    assert len(sel["scored_by"]) == 2  # the base and the trained model each score both
    for scores in sel["scored_by"].values():
        for side in ("a", "b"):
            assert 0 < scores[side]["cluster_coverage"] <= 1
            assert 0 <= scores[side]["duplicate_rate"] <= 1
            assert -1 <= scores[side]["retrieval_score"] <= 1
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "selection-table" in html and f"{run_id}@0" in html
