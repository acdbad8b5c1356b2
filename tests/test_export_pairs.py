"""Revise-training pairs (OpenAI and LLaVA records) and the all-revisions Parquet table."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from pathgen.store.engine import session_scope
from pathgen.store.revisions import tile_revisions
from tests.populate import RUN_ID, SUMMARIES, TILE_PX, populate
from tests.test_export_webdataset import cli, edit

ORIGINAL = f"Detailed description 0. {SUMMARIES[0]} Additional context."
DEGRADED = ORIGINAL.replace("focal necrosis", "no necrosis")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_revise_pairs_openai(engine, db_url: str, slides_dir, tmp_path: Path) -> None:
    await populate(engine)
    out = tmp_path / "pairs.jsonl"
    res = await cli(db_url, "export", "revise-pairs", RUN_ID, "--out", str(out))
    assert res.exit_code == 0, res.output
    (record,) = _jsonl(out)
    roles = [m["role"] for m in record["messages"]]
    assert roles == ["system", "user", "assistant"]
    system, user, assistant = record["messages"]
    assert "pathologist" in system["content"]
    assert isinstance(user["content"], str) and DEGRADED in user["content"]
    assert assistant["content"] == ORIGINAL
    meta = record["metadata"]
    assert meta["edits"][0]["term_from"] == "focal necrosis"
    assert meta["template_name"] == "revise_v1" and len(meta["template_hash"]) == 64
    assert not (tmp_path / "images").exists()

    with_images = tmp_path / "img.jsonl"
    res = await cli(
        db_url, "export", "revise-pairs", RUN_ID, "--out", str(with_images), "--with-images"
    )
    assert res.exit_code == 0, res.output
    (record,) = _jsonl(with_images)
    text_part, image_part = record["messages"][1]["content"]
    assert DEGRADED in text_part["text"]
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.size == (TILE_PX, TILE_PX)


async def test_revise_pairs_llava(engine, db_url: str, slides_dir, tmp_path: Path) -> None:
    pop = await populate(engine)
    out = tmp_path / "llava" / "pairs.jsonl"
    res = await cli(
        db_url, "export", "revise-pairs", RUN_ID, "--out", str(out), "--format", "llava"
    )
    assert res.exit_code == 0, res.output
    (record,) = _jsonl(out)
    human, gpt = record["conversations"]
    assert (human["from"], gpt["from"]) == ("human", "gpt")
    assert human["value"].startswith("<image>\n") and DEGRADED in human["value"]
    assert gpt["value"] == ORIGINAL
    assert record["metadata"]["tile_id"] == pop.tile_ids[0]
    assert record["metadata"]["edits"][0]["op"] == "modify"
    image = out.parent / record["image"]
    assert record["image"] == f"images/{record['id']}.jpg"
    assert Image.open(image).size == (TILE_PX, TILE_PX)

    bad = await cli(db_url, "export", "revise-pairs", RUN_ID, "--out", str(out), "--format", "csv")
    assert bad.exit_code == 2 and "unknown format" in bad.output  # a usage error


async def test_captions_parquet_has_every_revision(engine, db_url: str, tmp_path: Path) -> None:
    pop = await populate(engine)
    await edit(engine, pop.tile_ids[2], "Edited <b>caption</b>.")
    out = tmp_path / "captions.parquet"
    res = await cli(db_url, "export", "captions", RUN_ID, "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out).to_pylist()
    async with session_scope(engine) as s:
        stored = [r for t in pop.tile_ids for r in await tile_revisions(s, t, RUN_ID)]
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in stored)
    assert len(rows) == 6 * 3 + 2 + 1
    by_id = {r["id"]: r for r in rows}
    for rev in stored:
        row = by_id[rev.id]
        assert (row["text"], row["stage"], row["parent_id"], row["branch"]) == (
            rev.text,
            rev.stage,
            rev.parent_id,
            rev.branch,
        )
        assert row["created_at"] == rev.created_at
    degrade = next(r for r in rows if r["stage"] == "degrade")
    assert json.loads(degrade["edits"])[0]["term_to"] == "no necrosis"
    assert {r["stage"] for r in rows} == {"describe", "revise", "summarize", "degrade", "human"}

    missing = await cli(db_url, "export", "captions", "no-such-run", "--out", str(out))
    assert missing.exit_code == 1 and "no-such-run" in missing.output
