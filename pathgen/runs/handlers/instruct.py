"""The optional ``instruct`` stage: instruction-tuning / VQA items from a tile's description.

Items are keyed by tile id and queued after the tile's ``summarize`` (see
:func:`queue_instruct_after`) when ``captioning.instruct.enabled``. The input is the
tile's newest successful ``revise`` or curator (``human``) revision on the caption path;
every item is stored with its verdict (failed ones too, never exported) in the completion
transaction, so a retried or re-run item never stores its items twice. A rerun reuses the
items made from the same revision with the same provider, model and prompt, unless the
work item asks for ``force``. Provider errors are retried by the queue (transient) or park
the item; unusable model output parks it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pathgen.errors import BadOutput
from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.resources import Resources
from pathgen.runs.worker import PermanentError
from pathgen.store.engine import session_scope
from pathgen.store.instruct import NewInstructItem, insert_items
from pathgen.store.models import CaptionRevision, InstructItem, RunSlide, Slide, Tile

STAGE = "instruct"
SOURCE_STAGES = ("revise", "human")


#: A caption handler: the item, the run's resources and the item's batch read.
CaptionHandler = Callable[[Claimed, Resources, Any], Awaitable[Completion]]


def queue_instruct_after(handler: CaptionHandler) -> CaptionHandler:
    """Wrap the ``summarize`` handler: a finished summary also queues the tile's instruct
    item when the run has the stage enabled."""

    async def handle(item: Claimed, res: Resources, inputs: Any) -> Completion:
        done = await handler(item, res, inputs)
        if res.settings.captioning.instruct.enabled:
            done.follow_up.append(NewWork(STAGE, item.key))
        return done

    return handle


async def queue_missing_instruct(engine: AsyncEngine, run_id: str, max_attempts: int) -> int:
    """Queue the instruct item of every tile with a final caption that has none yet (what
    ``run --redo instruct`` does for a run that finished before the stage was enabled)."""
    from pathgen.runs.queue import enqueue
    from pathgen.store.captions import final_captions

    async with session_scope(engine) as session:
        tiles = sorted(await final_captions(session, run_id))
        work = [NewWork(STAGE, str(t)) for t in tiles]
        return await enqueue(session, run_id, work, max_attempts=max_attempts)


async def _source(session: AsyncSession, run_id: str, tile_id: int) -> CaptionRevision | None:
    """The tile's final reviewed-or-revised description."""
    return await session.scalar(
        select(CaptionRevision)
        .where(
            CaptionRevision.run_id == run_id,
            CaptionRevision.tile_id == tile_id,
            CaptionRevision.stage.in_(SOURCE_STAGES),
            CaptionRevision.branch == "caption",
            CaptionRevision.status == "ok",
        )
        .order_by(CaptionRevision.id.desc())
        .limit(1)
    )


async def _context(session: AsyncSession, run_id: str, tile: Tile) -> Any:
    from pathgen.stages.instruct_templates import LabelContext

    links = list(await session.scalars(select(RunSlide).where(RunSlide.run_id == run_id)))
    own = next((link for link in links if link.slide_id == tile.slide_id), None)
    return LabelContext(
        label=own.label if own else None,
        organ=own.organ if own else None,
        labels=tuple(sorted({link.label for link in links if link.label})),
        organs=tuple(sorted({link.organ for link in links if link.organ})),
    )


def _signature(cfg: Any) -> tuple[str, str, str]:
    """(provider, model, template hash) the configured stage stores on its items."""
    from pathgen.prompts import load_template
    from pathgen.stages.instruct import DEFAULT_TEMPLATE
    from pathgen.stages.instruct_templates import GENERATOR
    from pathgen.stages.vocabulary import load_contrast_vocabulary

    if cfg.provider == "offline":
        return "offline", f"templates:{GENERATOR}", load_contrast_vocabulary().sha256
    return cfg.provider, cfg.model, load_template(cfg.template or DEFAULT_TEMPLATE).sha256


async def _reusable(session: AsyncSession, item: Claimed, source_id: int, cfg: Any) -> int:
    """How many items of this tile were made from ``source_id`` the way ``cfg`` would."""
    provider, model, digest = _signature(cfg)
    rows = await session.scalars(
        select(InstructItem.id).where(
            InstructItem.run_id == item.run_id,
            InstructItem.tile_id == int(item.key),
            InstructItem.revision_id == source_id,
            InstructItem.provider == provider,
            InstructItem.template_hash == digest,
            InstructItem.model == model
            if provider == "offline"
            else InstructItem.model.is_not(None),
        )
    )
    return len(list(rows))


async def _image(res: Resources, tile: Tile, slide: Slide) -> Any:
    from pathgen.slides import read_tile

    def read() -> Any:
        return read_tile(res.slides.get(slide.path), tile.x, tile.y, tile.size, tile.tile_px)

    return await asyncio.to_thread(read)


def _row(item: Claimed, tile_id: int, source_id: int, v: Any) -> NewInstructItem:
    return NewInstructItem(
        run_id=item.run_id,
        tile_id=tile_id,
        revision_id=source_id,
        kind=v.draft.kind,
        turns=v.draft.turns,
        provider=v.provider,
        model=v.model,
        template_name=v.template_name,
        template_hash=v.template_hash,
        params=v.params,
        input_tokens=v.input_tokens,
        output_tokens=v.output_tokens,
        latency_s=v.latency_s,
        cost=v.cost,
        verify_status="passed" if v.verdict.ok else "failed",
        verify_reason=v.verdict.reason,
        verifier=v.verifier,
    )


async def handle_instruct(item: Claimed, res: Resources) -> Completion:
    from pathgen.stages.degrade_rules import seed_from_key
    from pathgen.stages.instruct import run_instruct

    cfg = res.settings.captioning.instruct
    if not cfg.enabled:
        return Completion(item, result={"disabled": True}, new_output=False)
    tile_id = int(item.key)
    async with session_scope(res.engine) as session:
        source = await _source(session, item.run_id, tile_id)
        if source is None:
            raise PermanentError(f"tile {tile_id}: no revised description to make items from")
        if not item.payload.get("force") and await _reusable(session, item, source.id, cfg):
            return Completion(item, result={"reused": source.id}, new_output=False)
        tile = await session.get(Tile, tile_id)
        slide = await session.get(Slide, tile.slide_id)
        context = await _context(session, item.run_id, tile)
        description = source.text
        source_id = source.id
    online = cfg.provider != "offline"
    image = await _image(res, tile, slide) if online and cfg.with_image else None
    client = await res.client("instruct", cfg) if online else None
    try:
        items = await run_instruct(
            client,
            cfg,
            description,
            context,
            seed=seed_from_key(item.run_id, tile_id, STAGE),
            image=image,
        )
    except BadOutput as exc:
        raise PermanentError(f"instruct: BadOutput: {exc}") from None
    rows = [_row(item, tile_id, source_id, v) for v in items]

    async def persist(session: AsyncSession) -> None:
        await insert_items(session, rows)

    failed = sum(1 for r in rows if r.verify_status == "failed")
    return Completion(item, persist=persist, result={"items": len(rows), "failed": failed})
