"""Revise-training pairs: (degraded, original) descriptions with the edits that degraded them.

Each ``degrade`` revision on the ``degraded`` branch has the original ``describe``
revision as its parent and its edit operations in ``edits``. A pair becomes one JSONL
record, prompted with the pipeline's own revise template:

* ``openai``: a chat fine-tuning record ``{"messages": [system, user, assistant]}``;
  text-only unless ``with_images`` (then the user turn carries the tile as a data URL);
* ``llava``: ``{"id", "image", "conversations": [human, gpt]}`` with the tile written
  to ``images/KEY.jpg`` beside the JSONL (``image`` is relative to the JSONL's folder).

Both carry ``metadata`` (edits, revision ids, tile, template).

Example::

    async with read_scope(engine) as session:
        pairs = await load_pairs(session, "run-1")
    write_pairs(pairs, Path("pairs.jsonl"), fmt="llava")
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from pathgen.errors import ExportError
from pathgen.export.samples import get_run, sample_key
from pathgen.export.shards import write_atomic
from pathgen.export.webdataset import encode_jpeg
from pathgen.prompts import render_parts
from pathgen.slides import SlideCache, read_tile
from pathgen.store.models import CaptionRevision, Slide, Tile

PairFormat = Literal["openai", "llava"]
FORMATS: tuple[str, ...] = ("openai", "llava")
DEFAULT_TEMPLATE = "revise_v1"


@dataclass(frozen=True)
class RevisePair:
    key: str
    tile_id: int
    degrade_revision_id: int
    original_revision_id: int
    degraded: str
    original: str
    edits: list[Any]
    slide_path: str
    x: int
    y: int
    size: int
    tile_px: int


async def load_pairs(session: AsyncSession, run_id: str) -> list[RevisePair]:
    """Every successful degrade revision of the run with its original, by degrade id."""
    await get_run(session, run_id)
    original = aliased(CaptionRevision)
    degrade = CaptionRevision
    rows = await session.execute(
        select(degrade, original.id, original.text, Tile, Slide)
        .join(original, original.id == degrade.parent_id)
        .join(Tile, Tile.id == degrade.tile_id)
        .join(Slide, Slide.id == Tile.slide_id)
        .where(
            degrade.run_id == run_id,
            degrade.branch == "degraded",
            degrade.stage == "degrade",
            degrade.status == "ok",
        )
        .order_by(degrade.id)
    )
    return [
        RevisePair(
            key=f"{sample_key(sl.fingerprint, sl.path, t.x, t.y, t.size)}_r{deg.id}",
            tile_id=t.id,
            degrade_revision_id=deg.id,
            original_revision_id=orig_id,
            degraded=deg.text,
            original=orig_text,
            edits=list(deg.edits or []),
            slide_path=sl.path,
            x=t.x,
            y=t.y,
            size=t.size,
            tile_px=t.tile_px,
        )
        for deg, orig_id, orig_text, t, sl in rows.all()
    ]


def _metadata(pair: RevisePair, template: str, template_hash: str) -> dict[str, Any]:
    return {
        "key": pair.key,
        "tile_id": pair.tile_id,
        "degrade_revision_id": pair.degrade_revision_id,
        "original_revision_id": pair.original_revision_id,
        "edits": pair.edits,
        "template_name": template,
        "template_hash": template_hash,
    }


def _record(
    pair: RevisePair, fmt: str, jpeg: bytes | None, template: str, image_rel: str | None
) -> dict[str, Any]:
    parts, tpl = render_parts(template, description=pair.degraded, has_image=jpeg is not None)
    meta = _metadata(pair, tpl.name, tpl.sha256)
    if fmt == "llava":
        prompt = f"{parts.system}\n\n{parts.user}" if parts.system else parts.user
        return {
            "id": pair.key,
            "image": image_rel,
            "conversations": [
                {"from": "human", "value": f"<image>\n{prompt}"},
                {"from": "gpt", "value": pair.original},
            ],
            "metadata": meta,
        }
    user: Any = parts.user
    if jpeg is not None:
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        user = [
            {"type": "text", "text": parts.user},
            {"type": "image_url", "image_url": {"url": url}},
        ]
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": pair.original}]
    if parts.system:
        messages.insert(0, {"role": "system", "content": parts.system})
    return {"messages": messages, "metadata": meta}


def write_pairs(
    pairs: Sequence[RevisePair],
    out: Path,
    *,
    fmt: str = "openai",
    with_images: bool = False,
    template: str = DEFAULT_TEMPLATE,
    jpeg_quality: int = 95,
    workers: int = 4,
    cache: SlideCache | None = None,
) -> int:
    """Write ``pairs`` to ``out`` as JSONL in ``fmt``; returns the number of records.

    LLaVA records always have an image; OpenAI records only ``with_images``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown pair format {fmt!r}: use one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    need_images = fmt == "llava" or with_images
    jpegs: list[bytes | None] = [None] * len(pairs)
    if need_images:
        cache = cache or SlideCache()

        def load(p: RevisePair) -> bytes:
            img = read_tile(cache.get(p.slide_path), p.x, p.y, p.size, p.tile_px)
            return encode_jpeg(img, jpeg_quality)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            jpegs = list(pool.map(load, pairs))
    images_dir = out.parent / "images"
    lines = []
    for pair, jpeg in zip(pairs, jpegs, strict=True):
        rel = None
        if fmt == "llava":
            images_dir.mkdir(exist_ok=True)
            rel = f"images/{pair.key}.jpg"
            write_atomic(out.parent / rel, jpeg or b"")
        record = _record(pair, fmt, jpeg if with_images or fmt == "llava" else None, template, rel)
        lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    write_atomic(out, ("\n".join(lines) + "\n" if lines else "").encode())
    return len(lines)
