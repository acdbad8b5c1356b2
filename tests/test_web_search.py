"""Search by meaning in the web UI: the run's CLIP model embeds the query, stored tiles rank."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.embed.files import load_embeddings, save_embeddings
from pathgen.settings import ModelSettings
from pathgen.slides import open_slide, read_tile
from pathgen.store.engine import session_scope
from pathgen.store.models import Embedding, Run
from pathgen.web import create_app
from pathgen.web.semantic import top_k
from tests.populate import ORIGINS, SIZE_L0, TILE_PX, Populated, populate
from tests.webutil import card_ids, settings_for

QUERY = "tumour cells infiltrating fibrous stroma"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    from pathgen.embed import load_clip, write_tiny_clip

    config_json, checkpoint = write_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=3)
    section = {"config_json": str(config_json), "pretrained": str(checkpoint), "device": "cpu"}
    return section, load_clip(ModelSettings(**section))


@pytest.fixture
async def store(
    engine: AsyncEngine, db_url: str, tmp_path: Path, tiny: tuple[dict[str, Any], Any]
) -> tuple[str, Populated, Path]:
    section, clip = tiny
    p = await populate(engine)
    with open_slide(
        Path(__file__).resolve().parents[2] / "shared/testdata/slides/CMU-1-Small-Region.svs"
    ) as reader:
        images = [read_tile(reader, x, y, SIZE_L0, TILE_PX) for x, y in ORIGINS]
    path = save_embeddings(
        tmp_path / "emb" / "cmu.npz", p.tile_ids, clip.encode_images(images), clip.fingerprint
    )
    async with session_scope(engine) as s:
        await s.execute(update(Run).where(Run.id == p.run_id).values(config={"model": section}))
        s.add(
            Embedding(
                slide_id=p.slide_id,
                model_fingerprint=clip.fingerprint,
                path=str(path),
                count=len(p.tile_ids),
                dim=clip.embed_dim,
            )
        )
    return db_url, p, path


@pytest.fixture
def client(store: tuple[str, Populated, Path]) -> Iterator[TestClient]:
    app = create_app(settings_for(store[0]), reviewer="tester", allowed_hosts=["testserver"])
    with TestClient(app) as c:
        yield c


def test_search_by_meaning_ranks_tiles_by_clip_similarity(
    client: TestClient, store: tuple[str, Populated, Path], tiny: tuple[dict[str, Any], Any]
) -> None:
    _, p, path = store
    _, clip = tiny
    r = client.get(f"/runs/{p.run_id}/search", params={"q": QUERY, "mode": "meaning"})
    assert r.status_code == 200, r.text
    ids, emb, _ = load_embeddings(path)
    scores = emb.astype(np.float32) @ clip.encode_texts([QUERY])[0]
    order = np.argsort(-scores)
    assert card_ids(r.text) == [int(ids[i]) for i in order]
    shown = [float(s) for s in re.findall(r'<span class="score"[^>]*>([-0-9.]+)</span>', r.text)]
    assert shown == pytest.approx([float(scores[i]) for i in order], abs=1e-3)


async def test_search_by_meaning_without_embeddings_says_what_to_do(
    engine: AsyncEngine, db_url: str
) -> None:
    import asyncio

    p = await populate(engine)

    def go() -> str:
        with TestClient(create_app(settings_for(db_url), allowed_hosts=["testserver"])) as c:
            return c.get(f"/runs/{p.run_id}/search", params={"q": "x", "mode": "meaning"}).text

    html = await asyncio.to_thread(go)
    assert "has no stored tile embeddings: run its embed stage first" in html
    assert card_ids(html) == []


def test_top_k_streams_files_and_matches_brute_force(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files, all_ids, all_emb = [], [], []
    for f in range(4):
        n = [7, 0, 30, 3][f]
        ids = np.arange(n) + 1000 * f
        emb = rng.normal(size=(n, 16)).astype(np.float32)
        files.append(save_embeddings(tmp_path / f"{f}.npz", ids, emb, "m"))
        all_ids.append(ids)
        all_emb.append(emb.astype(np.float16).astype(np.float32))
    ids, emb = np.concatenate(all_ids), np.concatenate(all_emb)
    q = rng.normal(size=16).astype(np.float32)
    brute = np.argsort(-(emb @ q))
    for k in (1, 5, 12, 100):
        got = top_k(q, files, k)
        assert [t for t, _ in got] == [int(ids[i]) for i in brute[:k]]
        assert [s for _, s in got] == pytest.approx([float((emb @ q)[i]) for i in brute[:k]])
    assert top_k(q, files, 0) == []
