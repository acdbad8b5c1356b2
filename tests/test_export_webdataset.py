"""WebDataset export: open_clip can load it, re-exports are byte-identical, resume works."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from pathgen.export import WebDatasetOptions, load_samples, write_webdataset
from pathgen.store import migrate
from pathgen.store.captions import human_edit, record_review
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import Run, Tile
from pathgen.store.revisions import NewRevision, insert_revisions
from tests.populate import RUN_ID, SIZE_L0, SUMMARIES, TILE_PX, populate


async def cli(db_url: str, *args: str):
    """Invoke the pathgen CLI with ``PATHGEN_DB_URL`` pointing at ``db_url``."""
    from pathgen.cli.app import app

    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, app, list(args), env={"PATHGEN_DB_URL": db_url}, catch_exceptions=False
    )


async def review(engine: AsyncEngine, tile_id: int, decision: str) -> None:
    async with session_scope(engine) as s:
        await record_review(s, run_id=RUN_ID, tile_id=tile_id, decision=decision, reviewer="ana")


async def edit(engine: AsyncEngine, tile_id: int, text: str) -> int:
    async with session_scope(engine) as s:
        return await human_edit(s, run_id=RUN_ID, tile_id=tile_id, text=text, reviewer="ana")


async def add_grid_tiles(engine: AsyncEngine, slide_id: int, count: int, stride: int = 90) -> None:
    """Add ``count`` overlapping tiles on the slide, each with an ok summarize revision."""
    async with session_scope(engine) as s:
        tiles = []
        for i in range(count):
            x, y = 40 + stride * (i % 19), 40 + stride * (i // 19)
            tiles.append(
                Tile(
                    slide_id=slide_id,
                    x=x,
                    y=y + 1,
                    size=SIZE_L0,
                    read_level=0,
                    mpp=0.5,
                    tile_px=TILE_PX,
                    tissue_fraction=0.8,
                )
            )
        s.add_all(tiles)
        await s.flush()
        await insert_revisions(
            s,
            [
                NewRevision(
                    tile_id=t.id,
                    run_id=RUN_ID,
                    stage="summarize",
                    text=f"Grid tile {i} with stroma and cells.",
                    provider="offline",
                    model="m",
                    template_name="summarize_v1",
                    template_hash="1" * 64,
                )
                for i, t in enumerate(tiles)
            ],
        )


async def set_run_model(engine: AsyncEngine, model: dict) -> None:
    async with session_scope(engine) as s:
        config = dict((await s.scalar(select(Run.config).where(Run.id == RUN_ID))) or {})
        config["model"] = model
        await s.execute(update(Run).where(Run.id == RUN_ID).values(config=config))


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- tests


@pytest.fixture
async def sqlite_db(tmp_path: Path, slides_dir: Path) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A migrated SQLite database with the demo run (files reachable from a subprocess)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'export.db'}"
    eng = make_engine(url)
    await migrate.upgrade(eng)
    try:
        yield url, eng
    finally:
        await eng.dispose()


def _samples(out: Path) -> list[dict]:
    import webdataset as wds

    shards = sorted(str(p) for p in out.glob("*.tar"))
    return list(wds.WebDataset(shards, shardshuffle=False))


def _import_open_clip_train():
    """open_clip's own training data module (it needs pandas, a dev dependency)."""
    import open_clip_train.data as data

    return data


async def test_shards_load_with_open_clip(sqlite_db, tmp_path: Path) -> None:
    import open_clip
    import pyarrow.parquet as pq

    from pathgen.embed import load_clip, write_tiny_clip
    from pathgen.settings import ModelSettings

    url, engine = sqlite_db
    pop = await populate(engine)
    await review(engine, pop.tile_ids[1], "reject")
    out = tmp_path / "wds"
    res = await cli(url, "export", "webdataset", RUN_ID, "--out", str(out), "--shard-size", "2")
    assert res.exit_code == 0, res.output

    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"00000.tar": 2, "00001.tar": 2, "00002.tar": 1}
    data = _import_open_clip_train()
    pattern = str(out / "{00000..00002}.tar")
    assert data.get_dataset_size(pattern) == (5, 3)

    config_json, ckpt = write_tiny_clip(tmp_path / "clip")
    clip = load_clip(
        ModelSettings(config_json=str(config_json), pretrained=str(ckpt), device="cpu")
    )
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    total, _ = data.get_dataset_size(pattern)
    args = SimpleNamespace(val_data=pattern, val_num_samples=total, workers=0, batch_size=2)
    info = data.get_wds_dataset(args, clip.preprocess, is_train=False, tokenizer=tokenizer)
    batches = list(info.dataloader)
    assert info.dataloader.num_samples == 5
    assert sum(len(texts) for _, texts in batches) == 5
    images, texts = batches[0]
    assert tuple(images.shape) == (2, 3, 224, 224) and tuple(texts.shape) == (2, 77)
    # the training loader (`--train-data ... --dataset-type webdataset`), sizes from sizes.json
    train_args = SimpleNamespace(
        train_data=pattern,
        train_num_samples=None,
        train_data_upsampling_factors=None,
        seed=0,
        workers=0,
        batch_size=2,
        world_size=1,
    )
    train = data.get_wds_dataset(train_args, clip.preprocess, is_train=True, tokenizer=tokenizer)
    assert train.dataloader.num_samples == 6  # 5 samples rounded up to whole batches
    train_batches = list(train.dataloader)
    assert len(train_batches) == 3
    for images, texts in train_batches:
        assert tuple(images.shape) == (2, 3, 224, 224) and tuple(texts.shape) == (2, 77)

    samples = _samples(out)
    assert len(samples) == sum(sizes.values())
    finals = {i: s for i, s in zip(pop.tile_ids, SUMMARIES, strict=True)}
    seen = set()
    for sample in samples:
        image = Image.open(io.BytesIO(sample["jpg"]))
        image.load()
        assert image.size == (TILE_PX, TILE_PX) and image.mode == "RGB"
        caption = sample["txt"].decode()
        assert len(tokenizer.encode(caption)) + 2 <= 77
        meta = json.loads(sample["json"])
        assert meta["key"] == sample["__key__"]
        assert caption == finals[meta["tile_id"]]
        assert meta["slide"]["fingerprint"] == "f" * 64
        assert meta["slide"]["path"].endswith("CMU-1-Small-Region.svs")
        assert (meta["size"], meta["mpp"], meta["tile_px"]) == (SIZE_L0, 0.5, TILE_PX)
        assert [r["stage"] for r in meta["revisions"]] == ["describe", "revise", "summarize"]
        assert meta["revisions"][-1]["id"] == meta["caption"]["revision_id"]
        assert meta["revisions"][0]["template_name"] == "describe_v1"
        assert meta["caption"]["review"] == "unreviewed"
        seen.add(meta["tile_id"])
    assert pop.tile_ids[1] not in seen  # rejected
    assert len(seen) == 5
    script = next(s for s in samples if b"<script>" in s["txt"])
    assert script["txt"].decode() == SUMMARIES[2]  # verbatim, not escaped

    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["key"] for r in manifest] == [s["__key__"] for s in samples]
    assert [r["key"] for r in manifest] == sorted(r["key"] for r in manifest)
    assert {r["shard"] for r in manifest} == set(sizes)
    assert all(len(r["revision_ids"]) == 3 and r["clip_score"] is None for r in manifest)


async def test_reexport_is_byte_identical_and_keeps_complete_shards(sqlite_db, tmp_path) -> None:
    url, engine = sqlite_db
    await populate(engine)
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        res = await cli(url, "export", "webdataset", RUN_ID, "--out", str(out), "--shard-size", "4")
        assert res.exit_code == 0, res.output
    first = tree_bytes(a)
    assert set(first) >= {"00000.tar", "00001.tar", "sizes.json", "manifest.parquet"}
    assert first == tree_bytes(b)
    with tarfile.open(a / "00000.tar") as tar:
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in tar} == {
            (0, 0, 0, "", "", 0o644)
        }
        names = tar.getnames()
    assert names == sorted(names, key=lambda n: (n.split(".")[0], n))

    again = await cli(url, "export", "webdataset", RUN_ID, "--out", str(a), "--shard-size", "4")
    assert "2 kept from an earlier run" in again.output
    assert tree_bytes(a) == first
    # A corrupted shard is detected by its sha256 and rewritten.
    (a / "00001.tar").write_bytes(b"garbage")
    fixed = await cli(url, "export", "webdataset", RUN_ID, "--out", str(a), "--shard-size", "4")
    assert "1 kept from an earlier run" in fixed.output
    assert tree_bytes(a) == first


async def test_review_filters_and_failed_summaries(engine, slides_dir, tmp_path) -> None:
    from pathgen.store.engine import session_scope as scope

    pop = await populate(engine)
    await review(engine, pop.tile_ids[0], "accept")
    await review(engine, pop.tile_ids[1], "reject")
    edited = await edit(engine, pop.tile_ids[3], "Curated: glandular structures.")
    await review(engine, pop.tile_ids[5], "accept")
    await review(engine, pop.tile_ids[5], "reject")  # the newest decision counts
    await add_grid_tiles(engine, pop.slide_id, 1)
    async with scope(engine) as s:  # a tile whose only summary failed (too long)
        tile = Tile(
            slide_id=pop.slide_id,
            x=5,
            y=5,
            size=SIZE_L0,
            read_level=0,
            mpp=0.5,
            tile_px=TILE_PX,
            tissue_fraction=0.9,
        )
        s.add(tile)
        await s.flush()
        await insert_revisions(
            s,
            [
                NewRevision(
                    tile_id=tile.id,
                    run_id=RUN_ID,
                    stage="summarize",
                    text="x " * 200,
                    provider="o",
                    model="m",
                    status="failed",
                    error="too long",
                )
            ],
        )
        failed_tile = tile.id

    async with scope(engine) as s:
        everything = await load_samples(s, RUN_ID)
        reviewed = await load_samples(s, RUN_ID, only_reviewed=True)
    ids = {x.tile_id for x in everything}
    assert failed_tile not in ids
    assert ids == {pop.tile_ids[i] for i in (0, 2, 3, 4)} | (ids - set(pop.tile_ids))
    assert len(ids - set(pop.tile_ids)) == 1  # the grid tile
    assert {x.tile_id: x.review for x in reviewed} == {
        pop.tile_ids[0]: "accept",
        pop.tile_ids[3]: "edit",
    }
    edited_sample = next(x for x in reviewed if x.tile_id == pop.tile_ids[3])
    assert edited_sample.caption == "Curated: glandular structures."
    assert edited_sample.revision_id == edited
    assert [r["stage"] for r in edited_sample.chain] == ["describe", "revise", "summarize", "human"]
    assert edited_sample.reviewer == "ana"

    # The same through the CLI writer: only the two reviewed tiles are in the shards.
    out = tmp_path / "reviewed"
    write_webdataset(reviewed, out, WebDatasetOptions(shard_size=10, workers=2))
    metas = [json.loads(s["json"]) for s in _samples(out)]
    assert sorted(m["tile_id"] for m in metas) == sorted(x.tile_id for x in reviewed)


async def test_min_clip_score_uses_the_runs_model(sqlite_db, tmp_path: Path) -> None:
    from pathgen.embed import load_clip, write_tiny_clip
    from pathgen.export.webdataset import tile_image
    from pathgen.settings import ModelSettings
    from pathgen.slides import SlideCache

    url, engine = sqlite_db
    await populate(engine)
    config_json, ckpt = write_tiny_clip(tmp_path / "clip", seed=3)
    model = {"config_json": str(config_json), "pretrained": str(ckpt), "device": "cpu"}
    await set_run_model(engine, model)
    clip = load_clip(ModelSettings(**model))
    async with session_scope(engine) as s:
        samples = await load_samples(s, RUN_ID)
    cache = SlideCache()
    expected = {
        x.key: float(
            clip.encode_images([tile_image(cache, x)])[0] @ clip.encode_texts([x.caption])[0]
        )
        for x in samples
    }
    ordered = sorted(expected.values())
    mid = len(ordered) // 2
    threshold = (ordered[mid - 1] + ordered[mid]) / 2  # halfway: robust to float noise
    out = tmp_path / "scored"
    res = await cli(
        url, "export", "webdataset", RUN_ID, "--out", str(out), "--min-clip-score", repr(threshold)
    )
    assert res.exit_code == 0, res.output
    metas = [json.loads(s["json"]) for s in _samples(out)]
    assert {m["key"] for m in metas} == {k for k, v in expected.items() if v >= threshold}
    assert 0 < len(metas) < len(samples)
    for m in metas:
        assert m["clip_score"] == pytest.approx(expected[m["key"]], abs=1e-4)
        assert m["clip_model"] == clip.fingerprint
    assert f"{len(samples) - len(metas)} below --min-clip-score" in res.output


async def test_killed_export_resumes_to_identical_shards(sqlite_db, tmp_path: Path) -> None:
    url, engine = sqlite_db
    pop = await populate(engine)
    await add_grid_tiles(engine, pop.slide_id, 190)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["export", "webdataset", RUN_ID, "--shard-size", "8", "--workers", "1"]
    exe = Path(sys.executable).with_name("pathgen")
    env = {**os.environ, "PATHGEN_DB_URL": url}
    proc = subprocess.Popen(
        [str(exe), *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        # Once shard 1 exists, shard 0 is complete and recorded in the state file.
        while not (killed / "00001.tar").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            await asyncio.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "sizes.json").exists()  # it really was interrupted
    partial = {p.name for p in killed.glob("*.tar")}
    assert 2 <= len(partial) < 25

    resumed = await cli(url, *args, "--out", str(killed))
    assert resumed.exit_code == 0, resumed.output
    assert "kept from an earlier run" in resumed.output
    fresh = await cli(url, *args, "--out", str(clean))
    assert fresh.exit_code == 0, fresh.output
    assert json.loads((clean / "sizes.json").read_text())["00024.tar"] == 4  # 196 samples
    assert tree_bytes(killed) == tree_bytes(clean)
    assert not list(killed.glob("*.tmp"))
