"""Instruct exports: LLaVA schema, question files, OpenAI parts, Parquet via ``datasets``,
slide-disjoint splits, byte-identical re-exports and resume."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from pathgen.export.instruct import load_instruct_records, split_slides
from pathgen.export.instruct_formats import write_instruct
from pathgen.settings import InstructSettings
from pathgen.stages.instruct import run_instruct
from pathgen.stages.instruct_templates import LabelContext
from pathgen.store.engine import session_scope
from pathgen.store.instruct import NewInstructItem, append_items, edit_item, review_item
from pathgen.store.models import RunSlide, Selection, Slide, Tile
from pathgen.store.revisions import NewRevision, insert_revisions
from tests.populate import ORIGINS, RUN_ID, SIZE_L0, SLIDE, TILE_PX, populate

DESCRIPTION = (
    "The tissue shows an infiltrating malignant epithelial tumour. The cells grow in solid "
    "sheets. The tumour appears poorly differentiated. The nuclei show marked nuclear "
    "pleomorphism. Desmoplastic stroma surrounds the nests. Focal necrosis is present."
)


async def _add_slides(engine, tmp_path: Path, n: int) -> None:
    """``n`` more slides (links to the same file under other names), two tiles each."""
    for k in range(n):
        link = tmp_path / f"slide-{k}.svs"
        link.symlink_to(SLIDE)
        async with session_scope(engine) as s:
            slide = Slide(path=str(link), fingerprint=f"{k}" * 64, mpp=0.499, status="tiled")
            s.add(slide)
            await s.flush()
            s.add(RunSlide(run_id=RUN_ID, slide_id=slide.id, label="normal", organ="breast"))
            for x, y in ORIGINS[:2]:
                tile = Tile(slide_id=slide.id, x=x, y=y, size=SIZE_L0, read_level=0, mpp=0.5,
                            tile_px=TILE_PX, tissue_fraction=0.9)  # fmt: skip
                s.add(tile)
                await s.flush()
                s.add(Selection(run_id=RUN_ID, tile_id=tile.id, kept=True, reasons=["t"]))
                await s.flush()
                common = dict(tile_id=tile.id, run_id=RUN_ID, provider="offline", model="m")
                await insert_revisions(
                    s, [NewRevision(stage="summarize", text="Short caption.", **common)]
                )


async def _make_items(engine) -> list[int]:
    """Template-made items for every tile with a final caption, as the stage stores them."""
    from pathgen.store.captions import final_captions

    cfg = InstructSettings(enabled=True)
    async with session_scope(engine) as s:
        finals = await final_captions(s, RUN_ID)
    rows = []
    for tile_id, final in sorted(finals.items()):
        for v in await run_instruct(None, cfg, DESCRIPTION, LabelContext("tumour"), seed=tile_id):
            rows.append(
                NewInstructItem(run_id=RUN_ID, tile_id=tile_id, revision_id=final.revision_id,
                                kind=v.draft.kind, turns=v.draft.turns, provider=v.provider,
                                model=v.model, template_name=v.template_name,
                                template_hash=v.template_hash, verifier=v.verifier,
                                verify_status="passed" if v.verdict.ok else "failed",
                                verify_reason=v.verdict.reason)
            )  # fmt: skip
    return await append_items(engine, rows)


@pytest.fixture
async def store(engine, tmp_path: Path):
    if not SLIDE.exists():
        pytest.skip(f"test slide not found: {SLIDE}")
    pop = await populate(engine)
    await _add_slides(engine, tmp_path, 4)
    ids = await _make_items(engine)
    return pop, ids


async def _records(engine, **kw):
    async with session_scope(engine) as s:
        return await load_instruct_records(s, RUN_ID, **kw)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


async def test_llava_json_matches_what_llavas_loader_expects(engine, store, tmp_path) -> None:
    records = await _records(engine)
    out = tmp_path / "llava"
    result = await asyncio.to_thread(write_instruct, records, out, fmt="llava", val=0.25, test=0.25)
    assert result.counts["train"] and result.counts["val"] and result.counts["test"]
    seen_ids = set()
    kinds = set()
    for split in ("train", "val", "test"):
        data = json.loads((out / f"{split}.json").read_text())
        for rec in data:
            assert set(rec) == {"id", "image", "conversations", "metadata"}
            assert rec["id"] not in seen_ids
            seen_ids.add(rec["id"])
            with Image.open(out / rec["image"]) as img:
                assert img.size == (TILE_PX, TILE_PX)
            conv = rec["conversations"]
            assert len(conv) >= 2 and len(conv) % 2 == 0
            assert [c["from"] for c in conv] == ["human", "gpt"] * (len(conv) // 2)
            assert conv[0]["value"].startswith("<image>\n")
            assert sum(c["value"].count("<image>") for c in conv) == 1
            assert all(isinstance(c["value"], str) and c["value"].strip() for c in conv)
            kinds.add(rec["metadata"]["kind"])
    assert kinds == {"open", "yesno", "choice", "label", "conversation"}
    assert len(seen_ids) == len(records)


async def test_no_slide_in_two_splits_and_the_split_is_deterministic(engine, store) -> None:
    records = await _records(engine)
    sides = split_slides(records, val=0.25, test=0.25, seed=0)
    slides = {s: {r.slide for r in rs} for s, rs in sides.items()}
    assert all(slides.values())
    assert not (slides["train"] & slides["val"]) and not (slides["train"] & slides["test"])
    assert not (slides["val"] & slides["test"])
    again = split_slides(list(reversed(records)), val=0.25, test=0.25, seed=0)
    assert {s: {r.slide for r in rs} for s, rs in again.items()} == slides


@pytest.mark.parametrize("fmt", ["llava", "llava-questions", "openai", "parquet"])
async def test_reexport_is_byte_identical_and_resumes(engine, store, tmp_path, fmt) -> None:
    records = await _records(engine)
    a, b = tmp_path / "a", tmp_path / "b"
    first = await asyncio.to_thread(write_instruct, records, a, fmt=fmt)
    await asyncio.to_thread(write_instruct, records, b, fmt=fmt)
    assert _tree(a) == _tree(b) and first.images_written == len({r.key for r in records})
    # An interrupted export: one image and the data files are missing; the rest is kept.
    before = _tree(a)
    victim = sorted((a / "images").iterdir())[0]
    victim.unlink()
    for name in first.files:
        (a / name).unlink()
    again = await asyncio.to_thread(write_instruct, records, a, fmt=fmt)
    assert again.images_written == 1 and again.images_kept == first.images_written - 1
    assert _tree(a) == before


async def test_parquet_loads_with_datasets_and_the_image_decodes(engine, store, tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    records = await _records(engine)
    out = tmp_path / "pq"
    await asyncio.to_thread(write_instruct, records, out, fmt="parquet", val=0, test=0)
    ds = datasets.load_dataset(
        "parquet", data_files={"train": str(out / "train.parquet")}, cache_dir=str(tmp_path / "c")
    )["train"]
    assert len(ds) == len(records)
    assert isinstance(ds.features["image"], datasets.Image)
    row = ds[0]
    assert row["image"].size == (TILE_PX, TILE_PX) and row["image"].mode == "RGB"
    assert row["messages"][0]["role"] == "user" and row["messages"][0]["content"].startswith(
        "<image>\n"
    )
    assert [m["role"] for m in row["messages"]][:2] == ["user", "assistant"]


async def test_question_file_openai_parts_and_what_is_left_out(engine, store, tmp_path) -> None:
    pop, ids = store
    records = await _records(engine)
    # A failed item is never exported; a rejected one neither; an edit replaces its parent.
    async with session_scope(engine) as s:
        await review_item(s, item_id=records[0].item_id, decision="reject", reviewer="ana")
        new = await edit_item(
            s, item_id=records[1].item_id, reviewer="ana",
            turns=[{"kind": "open", "question": "What is seen?", "answer": "Tumour."}],
        )  # fmt: skip
    (planted,) = await append_items(
        engine,
        [NewInstructItem(run_id=RUN_ID, tile_id=pop.tile_ids[0], revision_id=pop.summarize_ids[0],
                         kind="yesno", turns=[{"question": "Q?", "answer": "No."}],
                         provider="offline", model="m", verify_status="failed",
                         verify_reason="planted")],
    )  # fmt: skip
    after = {r.item_id for r in await _records(engine)}
    assert records[0].item_id not in after and records[1].item_id not in after
    assert new in after and planted not in after
    reviewed = {r.item_id for r in await _records(engine, only_reviewed=True)}
    assert reviewed == {new}

    records = await _records(engine)
    out = tmp_path / "q"
    await asyncio.to_thread(write_instruct, records, out, fmt="llava-questions", val=0, test=0)
    questions = [json.loads(x) for x in (out / "train_questions.jsonl").read_text().splitlines()]
    answers = [json.loads(x) for x in (out / "train_answers.jsonl").read_text().splitlines()]
    assert [q["question_id"] for q in questions] == [a["question_id"] for a in answers]
    assert len(questions) == sum(1 for r in records if len(r.turns) == 1)
    assert all(set(q) == {"question_id", "image", "text", "category"} for q in questions)
    yesno = [a["answer_label"] for a in answers if a["category"] == "yesno"]
    assert set(yesno) == {"yes", "no"}

    out = tmp_path / "oa"
    await asyncio.to_thread(write_instruct, records, out, fmt="openai", val=0, test=0)
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    user, assistant = first["messages"][:2]
    url = user["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,") and assistant["role"] == "assistant"
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        assert img.size == (TILE_PX, TILE_PX)


async def test_cli_export_instruct(engine, store, db_url, tmp_path) -> None:
    from pathgen.cli.app import app

    out = tmp_path / "cli"
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["export", "instruct", RUN_ID, "--format", "llava", "--out", str(out)],
        env={"PATHGEN_DB_URL": db_url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and (out / "split.json").is_file()
    bad = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["export", "instruct", RUN_ID, "--format", "csv", "--out", str(out)],
        env={"PATHGEN_DB_URL": db_url},
    )
    assert bad.exit_code == 2 and "unknown format 'csv'" in bad.output  # a usage error
