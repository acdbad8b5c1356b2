"""search-tiles and zeroshot over a run's stored embeddings, against brute force."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.embed import embed_tiles, embedding_path, load_clip, save_embeddings
from pathgen.settings import ModelSettings
from pathgen.slides import SlideCache, read_tile
from pathgen.store.engine import session_scope
from pathgen.store.models import Embedding, Run, Tile
from tests.clip_helpers import make_tiny_checkpoint
from tests.populate import populate


async def _embedded_run(engine, tmp_path: Path):  # noqa: ANN001, ANN202
    pop = await populate(engine)
    cfg_json, ckpt = make_tiny_checkpoint(tmp_path / "model")
    model = ModelSettings(name="tiny_clip", config_json=str(cfg_json), pretrained=str(ckpt))
    clip = load_clip(model)
    async with session_scope(engine) as s:
        run = await s.get(Run, pop.run_id)
        run.config = {**run.config, "model": model.model_dump(mode="json")}
        tiles = [await s.get(Tile, t) for t in pop.tile_ids]
    reader = SlideCache().get(
        str(Path(__file__).resolve().parents[2] / "shared/testdata/slides/CMU-1-Small-Region.svs")
    )
    emb = embed_tiles(clip, tiles, lambda t: read_tile(reader, t.x, t.y, t.size, t.tile_px))
    path = embedding_path(tmp_path / "data", clip.fingerprint, "slide-1")
    save_embeddings(path, [t.id for t in tiles], emb.embeddings, clip.fingerprint)
    async with session_scope(engine) as s:
        s.add(
            Embedding(
                slide_id=pop.slide_id,
                model_fingerprint=clip.fingerprint,
                path=str(path),
                count=len(tiles),
                dim=emb.embeddings.shape[1],
            )
        )
    return pop, clip, np.asarray(emb.embeddings, dtype=np.float32)


def _cli(db_url: str, *args: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(args), env={"PATHGEN_DB_URL": db_url})


async def test_search_tiles_text_and_like(engine, db_url: str, tmp_path: Path) -> None:
    pop, clip, emb = await _embedded_run(engine, tmp_path)
    q = clip.encode_texts(["necrosis"])[0]
    expected = [pop.tile_ids[i] for i in np.argsort(-(emb @ q), kind="stable")[:3]]
    res = await asyncio.to_thread(
        _cli, db_url, "search-tiles", pop.run_id, "--text", "necrosis", "--top", "3", "--json"
    )
    assert res.exit_code == 0, res.output
    assert [h["tile_id"] for h in json.loads(res.output)] == expected

    like = pop.tile_ids[2]
    sims = emb @ emb[2]
    order = [pop.tile_ids[i] for i in np.argsort(-sims, kind="stable") if pop.tile_ids[i] != like]
    res = await asyncio.to_thread(
        _cli, db_url, "search-tiles", pop.run_id, "--like", str(like), "--top", "3", "--json"
    )
    assert [h["tile_id"] for h in json.loads(res.output)] == order[:3]

    bad = await asyncio.to_thread(_cli, db_url, "search-tiles", pop.run_id)
    assert bad.exit_code == 2 and "exactly one of --text or --like" in bad.output


async def test_zeroshot_csv_matches_direct_classification(
    engine, db_url: str, tmp_path: Path
) -> None:
    from pathgen.embed import DEFAULT_TEMPLATES, classify, zeroshot_classifier

    pop, clip, emb = await _embedded_run(engine, tmp_path)
    out = tmp_path / "zs.csv"
    res = await asyncio.to_thread(
        _cli, db_url, "zeroshot", pop.run_id, "--classes", "tumour,stroma,fat", "--out", str(out)
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(pop.tile_ids)
    pred, _ = classify(
        emb, zeroshot_classifier(clip, ["tumour", "stroma", "fat"], DEFAULT_TEMPLATES)
    )
    names = ["tumour", "stroma", "fat"]
    assert [r["prediction"] for r in rows] == [names[p] for p in pred]
    for r in rows:
        assert abs(sum(float(r[f"p_{n}"]) for n in names) - 1) < 1e-3
