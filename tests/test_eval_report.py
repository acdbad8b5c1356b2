"""``pathgen eval`` end to end on the populated store with a tiny CLIP: metrics and report."""

from __future__ import annotations

import asyncio
import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.embed.tiny import write_tiny_clip
from pathgen.eval.text_metrics import words
from pathgen.settings import ModelSettings, Settings
from pathgen.store.captions import human_edit, record_review
from pathgen.store.engine import session_scope
from pathgen.store.models import Run
from tests.populate import ORIGINS, SLIDE, SUMMARIES, populate


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables: list[str] = []
        self.script_tags = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"] or "")
        if tag == "table" and a.get("id"):
            self.tables.append(a["id"] or "")
        if tag == "script":
            self.script_tags += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def _prepare(engine: AsyncEngine, tmp_path: Path) -> tuple[list[int], Path]:
    if not SLIDE.is_file():
        pytest.skip(f"test slide missing: {SLIDE}")
    pop = await populate(engine)
    config_json, ckpt = await asyncio.to_thread(write_tiny_clip, tmp_path / "clip", 0)
    settings = Settings(
        model=ModelSettings(config_json=str(config_json), pretrained=str(ckpt), device="cpu")
    )
    async with session_scope(engine) as s:
        run = await s.get(Run, pop.run_id)
        assert run is not None
        run.config = settings.snapshot()
        t = pop.tile_ids
        await record_review(s, run_id=pop.run_id, tile_id=t[0], decision="accept", reviewer="a")
        await record_review(s, run_id=pop.run_id, tile_id=t[1], decision="reject", reviewer="a")
        await human_edit(
            s, run_id=pop.run_id, tile_id=t[3], text=SUMMARIES[3] + " Edited.", reviewer="a"
        )
    refs = tmp_path / "refs.csv"
    with open(refs, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["tile_id", "slide", "x", "y", "text"])
        w.writerow([pop.tile_ids[0], "", "", "", SUMMARIES[0]])  # identical to the caption
        w.writerow([pop.tile_ids[1], "", "", "", "Loose fibrous tissue with a few vessels."])
        x, y = ORIGINS[4]
        w.writerow(["", SLIDE.name, x, y, "Fat cells separated by thin fibrous septa."])
        w.writerow(["", "other.svs", x, y, "Not a tile of this run."])
    return pop.tile_ids, refs


async def test_eval_report_on_populated_store(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    tile_ids, refs = await _prepare(engine, tmp_path)
    out = tmp_path / "report"
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["eval", "demo-run", "--references", str(refs), "--out", str(out)],
        env={"PATHGEN_DB_URL": db_url},
    )
    assert result.exit_code == 0, result.output
    assert "report written" in result.output

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tiles"] == {"captioned": 6, "embedded": 6, "unreadable": {}}
    groups = metrics["groups"]
    assert set(groups) == {
        "describe/offline:offline-clip",
        "revise/offline:offline-clip",
        "summarize/offline:offline-clip",
        "human/human:curator",
        "final",
    }
    summ = groups["summarize/offline:offline-clip"]
    assert summ["captions"] == 6
    assert summ["clip_score"]["n"] == 6
    assert -1.0 <= summ["clip_score"]["min"] <= summ["clip_score"]["max"] <= 1.0
    assert summ["words"]["min"] == min(len(words(s)) for s in SUMMARIES)
    assert summ["clip_tokens"]["min"] > summ["words"]["min"]  # start/end tokens + punctuation
    assert summ["exact_duplicate_rate"] == 0.0
    assert summ["near_duplicate_embedder"] == "all-MiniLM-L6-v2"
    assert summ["retrieval"]["queries"] == 6 and summ["retrieval"]["gallery"] == 6
    assert summ["retrieval"]["r@10"] == 1.0  # 6 tiles: the own tile is always in the top 10
    ref = summ["references"]
    assert ref["n"] == 3  # the row naming another slide is ignored
    assert 0.0 < ref["bleu4"]["corpus"] < 1.0
    # Tile 0's caption equals its reference: sentence BLEU 1 for that pair.
    assert ref["sbert_cosine"]["max"] == pytest.approx(1.0, abs=1e-4)
    assert ref["rouge_l_f"] < 1.0
    # The final group: five summaries plus the human edit of tile 3.
    assert groups["final"]["captions"] == 6
    assert metrics["references"]["tiles"] == 3

    rec = metrics["recovery"]
    assert rec["degraded"]["pairs"] == 1
    assert rec["degraded"]["by_op"]["modify"] == {"made": 1, "undone": 1, "rate": 1.0}
    assert rec["correct"]["overall"]["pairs"] == 6
    review = metrics["review"]
    assert review["reviewed"] == 3
    assert review["accept_rate"] == pytest.approx(1 / 3)
    assert review["human_edits"] == 1
    assert review["edit_distance"]["mean"] == pytest.approx(1 / 10)  # 9 words + "Edited"

    html = (out / "index.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    page.close()
    assert page.script_tags == 0  # the <script> caption is escaped, not executed
    assert "&lt;script&gt;" in html
    assert {"groups-table", "references-table", "recovery-table", "review-table"} <= set(
        page.tables
    )
    assert "plots/recovery.png" in page.images
    for src in page.images:
        png = out / src
        assert png.is_file() and png.stat().st_size > 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len([s for s in page.images if s.startswith("plots/clip_")]) == len(groups)


def test_eval_unknown_run_fails_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"], env={"PATHGEN_DB_URL": url}).exit_code == 0
    result = runner.invoke(
        app, ["eval", "missing", "--out", str(tmp_path / "r")], env={"PATHGEN_DB_URL": url}
    )
    assert result.exit_code == 1
    assert "run 'missing' not found" in result.output
