"""The caption stages: describe → degrade → revise → summarize, one tile per item.

Keys: ``describe``/``fuse``/``revise``/``summarize`` items are keyed by tile id (the
caption path); ``degrade`` items by ``"<tile>:<copy>"`` and the reviser's pass over a degraded
copy by ``"<tile>:degraded:<copy>"``. Each handler finds its input revision by query,
writes its output as a new revision in the completion transaction, and queues the
next stage. A stage call that fails is retried by the queue (transient provider
errors) or parked at once (unusable output); when parked, a failed revision with the
error is stored, so nothing is silently missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.resources import Resources
from pathgen.runs.worker import PermanentError, StageFailed
from pathgen.store.engine import session_scope
from pathgen.store.models import CaptionRevision, RunSlide, Slide, Tile
from pathgen.store.revisions import NewRevision, insert_revisions

TRANSIENT = ("RateLimited", "ProviderError", "TimeoutError")


@dataclass
class TileContext:
    tile: Tile
    slide: Slide
    report: str | None


async def _context(res: Resources, run_id: str, tile_id: int) -> TileContext:
    async with session_scope(res.engine) as session:
        tile = await session.get(Tile, tile_id)
        if tile is None:
            raise PermanentError(f"tile {tile_id} does not exist")
        slide = await session.get(Slide, tile.slide_id)
        link = await session.get(RunSlide, (run_id, tile.slide_id))
    return TileContext(tile, slide, link.report_text if link else None)


async def _image(res: Resources, ctx: TileContext) -> Any:
    from pathgen.slides import read_tile

    def read() -> Any:
        reader = res.slides.get(ctx.slide.path)
        return read_tile(reader, ctx.tile.x, ctx.tile.y, ctx.tile.size, ctx.tile.tile_px)

    return await asyncio.to_thread(read)


async def _latest(
    res: Resources,
    run_id: str,
    tile_id: int,
    stage: str,
    branch: str,
    copy: int | None = None,
    parent_id: int | None = None,
) -> CaptionRevision | None:
    stmt = select(CaptionRevision).where(
        CaptionRevision.run_id == run_id,
        CaptionRevision.tile_id == tile_id,
        CaptionRevision.stage == stage,
        CaptionRevision.branch == branch,
        CaptionRevision.status == "ok",
    )
    if parent_id is not None:
        stmt = stmt.where(CaptionRevision.parent_id == parent_id)
    rows = list(await _scalars(res, stmt.order_by(CaptionRevision.id.desc())))
    if copy is not None:
        rows = [r for r in rows if (r.params or {}).get("copy") == copy]
    return rows[0] if rows else None


async def _scalars(res: Resources, stmt: Any) -> list[Any]:
    async with session_scope(res.engine) as session:
        return list(await session.scalars(stmt))


def _revision(
    item: Claimed,
    tile_id: int,
    out: Any,
    *,
    parent_id: int | None,
    branch: str,
    extra_params: dict[str, Any] | None = None,
) -> NewRevision:
    params = dict(out.params)
    if extra_params:
        params.update(extra_params)
    if out.metrics:
        params["metrics"] = out.metrics
    if out.attempts:
        params["attempts"] = out.attempts
    if getattr(out, "finish_reason", None):
        params["finish_reason"] = out.finish_reason
    if getattr(out, "batch_id", None):
        params["batch_id"] = out.batch_id
    return NewRevision(
        tile_id=tile_id,
        run_id=item.run_id,
        stage=out.stage,
        text=out.text,
        provider=out.provider,
        model=out.model,
        parent_id=parent_id,
        branch=branch,
        template_name=out.template_name,
        template_hash=out.template_hash,
        params=params,
        input_tokens=out.input_tokens,
        output_tokens=out.output_tokens,
        cached_input_tokens=out.cached_input_tokens,
        latency_s=out.latency_s,
        cost=out.cost,
        status=out.status,
        error=out.error,
        edits=out.edits or None,
    )


def _writer(*revs: NewRevision):  # noqa: ANN202 - a persist callback
    async def persist(session: AsyncSession) -> None:
        await insert_revisions(session, list(revs))

    return persist


def _finish(item: Claimed, rev: NewRevision, follow_up: list[NewWork]) -> Completion:
    """A successful output completes the item; a failed one is retried or parked."""
    if rev.status == "ok":
        return Completion(item, persist=_writer(rev), follow_up=follow_up)
    error = rev.error or "stage failed"
    raise StageFailed(error, retryable=error.startswith(TRANSIENT), persist=_writer(rev))


def _same_config(existing: CaptionRevision, cfg: Any, default_template: str | None) -> bool:
    """Was ``existing`` made by the same provider, model and prompt template as ``cfg``?"""
    from pathgen.prompts import load_template

    rules = existing.provider == "rules"
    if rules != (cfg.mode == "rules" and default_template == "degrade_llm_v1"):
        return False
    if rules:
        return True
    if existing.provider != cfg.provider:
        return False
    if cfg.provider != "offline" and existing.model != cfg.model:
        return False
    names = {cfg.template or default_template}
    if default_template == "summarize_v1":
        names.add("summarize_strict_v1")
    return existing.template_hash in {load_template(n).sha256 for n in names}


def _skip(
    item: Claimed,
    existing: CaptionRevision | None,
    follow_up: list[NewWork],
    cfg: Any,
    default_template: str,
) -> Completion | None:
    """Re-running a stage reuses an existing revision made with the same provider, model and
    prompt template, unless the item asks for ``force``."""
    if existing is None or item.payload.get("force"):
        return None
    if not _same_config(existing, cfg, default_template):
        return None
    return Completion(item, follow_up=follow_up, result={"reused": existing.id}, new_output=False)


def _after_description(key: str, cfg: Any) -> list[NewWork]:
    """Work that follows a tile's (possibly fused) description."""
    tile_id = int(key)
    follow = [NewWork("revise", key)]
    return follow + [NewWork("degrade", f"{tile_id}:{k}") for k in range(cfg.degrade_copies)]


async def _description(res: Resources, run_id: str, tile_id: int) -> CaptionRevision | None:
    """The description later stages work on: the fused one when fusion is on."""
    stage = "fuse" if res.settings.captioning.describers else "describe"
    return await _latest(res, run_id, tile_id, stage, "caption")


async def handle_describe(item: Claimed, res: Resources) -> Completion:
    from pathgen.stages import DescribeInput, run_describe

    tile_id = int(item.key)
    cfg = res.settings.captioning
    describers = [cfg.describe, *cfg.describers]
    fusion = len(describers) > 1
    follow = [NewWork("fuse", item.key)] if fusion else _after_description(item.key, cfg)
    existing = await _latest(res, item.run_id, tile_id, "describe", "caption")
    if skipped := _skip(item, existing, follow, cfg.describe, "describe_v1"):
        return skipped
    ctx = await _context(res, item.run_id, tile_id)
    image = await _image(res, ctx)
    examples = []
    if cfg.few_shot_k:
        examples = await res.few_shot.examples(ctx.tile, cfg.few_shot_k)
    inputs = DescribeInput(image=image, report=ctx.report, examples=tuple(e.text for e in examples))
    clients = [await res.client(c) for c in describers]
    outs = await asyncio.gather(
        *(run_describe(client, c, inputs) for client, c in zip(clients, describers, strict=True))
    )
    shots = [{"source": e.source, "score": round(e.score, 4)} for e in examples]
    revs = [
        _revision(
            item,
            tile_id,
            out,
            parent_id=None,
            branch="caption",
            extra_params={"describer": i, "few_shot": shots} if shots or fusion else None,
        )
        for i, out in enumerate(outs)
    ]
    if any(r.status == "ok" for r in revs):
        return Completion(item, persist=_writer(*revs), follow_up=follow)
    error = "; ".join(r.error or "failed" for r in revs)
    retry = any((r.error or "").startswith(TRANSIENT) for r in revs)
    raise StageFailed(error, retryable=retry, persist=_writer(*revs))


async def handle_fuse(item: Claimed, res: Resources) -> Completion:
    from pathgen.stages import run_fuse

    tile_id = int(item.key)
    cfg = res.settings.captioning
    follow = _after_description(item.key, cfg)
    existing = await _latest(res, item.run_id, tile_id, "fuse", "caption")
    if skipped := _skip(item, existing, follow, cfg.fuse, "fuse_v1"):
        return skipped
    rows = await _scalars(
        res,
        select(CaptionRevision)
        .where(
            CaptionRevision.run_id == item.run_id,
            CaptionRevision.tile_id == tile_id,
            CaptionRevision.stage == "describe",
            CaptionRevision.status == "ok",
        )
        .order_by(CaptionRevision.id.desc()),
    )
    newest: dict[int, CaptionRevision] = {}
    for row in rows:  # the newest successful description of each describer
        newest.setdefault(int((row.params or {}).get("describer", 0)), row)
    inputs = [newest[i] for i in sorted(newest)]
    if not inputs:
        raise PermanentError(f"tile {tile_id}: no description to fuse")
    out = await run_fuse(await res.client("fuse"), cfg.fuse, [r.text for r in inputs])
    rev = _revision(item, tile_id, out, parent_id=inputs[0].id, branch="caption")
    rev.parent_ids = [r.id for r in inputs]
    return _finish(item, rev, follow)


async def handle_degrade(item: Claimed, res: Resources) -> Completion:
    from pathgen.stages import run_degrade, seed_from_key

    tile_s, copy_s = item.key.split(":")
    tile_id, copy = int(tile_s), int(copy_s)
    follow = [NewWork("revise", f"{tile_id}:degraded:{copy}")]
    source = await _description(res, item.run_id, tile_id)
    if source is None:
        raise PermanentError(f"tile {tile_id}: no description to degrade")
    existing = await _latest(res, item.run_id, tile_id, "degrade", "degraded", copy=copy)
    cfg = res.settings.captioning.degrade
    if skipped := _skip(item, existing, follow, cfg, "degrade_llm_v1"):
        return skipped
    client = await res.client("degrade") if cfg.mode in ("llm", "batch") else None
    out = await run_degrade(
        client, cfg, source.text, seed=seed_from_key(item.run_id, tile_id, copy)
    )
    rev = _revision(
        item, tile_id, out, parent_id=source.id, branch="degraded", extra_params={"copy": copy}
    )
    return _finish(item, rev, follow)


async def handle_revise(item: Claimed, res: Resources) -> Completion:
    from pathgen.stages import run_revise

    parts = item.key.split(":")
    tile_id = int(parts[0])
    if len(parts) == 1:  # the caption path: revise the description
        branch, follow = "caption", [NewWork("summarize", item.key)]
        source = await _description(res, item.run_id, tile_id)
        extra: dict[str, Any] = {}
    else:  # the reviser's pass over a degraded copy
        copy = int(parts[2])
        branch, follow = "degraded", []
        source = await _latest(res, item.run_id, tile_id, "degrade", "degraded", copy=copy)
        extra = {"copy": copy}
    if source is None:
        raise PermanentError(f"revise {item.key}: its input revision is missing")
    existing = await _latest(res, item.run_id, tile_id, "revise", branch, parent_id=source.id)
    if skipped := _skip(item, existing, follow, res.settings.captioning.revise, "revise_v1"):
        return skipped
    ctx = await _context(res, item.run_id, tile_id)
    image = await _image(res, ctx)
    client = await res.client("revise")
    out = await run_revise(
        client, res.settings.captioning.revise, source.text, image=image, input_kind=source.stage
    )
    rev = _revision(item, tile_id, out, parent_id=source.id, branch=branch, extra_params=extra)
    return _finish(item, rev, follow)


async def handle_summarize(item: Claimed, res: Resources) -> Completion:
    from pathgen.stages import run_summarize

    tile_id = int(item.key)
    source = await _latest(res, item.run_id, tile_id, "revise", "caption")
    if source is None:
        raise PermanentError(f"tile {tile_id}: no revised description to summarize")
    existing = await _latest(res, item.run_id, tile_id, "summarize", "caption", parent_id=source.id)
    cfg = res.settings.captioning
    if skipped := _skip(item, existing, [], cfg.summarize, "summarize_v1"):
        return skipped
    clip = await res.clip()
    client = await res.client("summarize")
    out = await run_summarize(
        client, cfg.summarize, source.text, clip.count_tokens, max_clip_tokens=cfg.max_clip_tokens
    )
    return _finish(item, _revision(item, tile_id, out, parent_id=source.id, branch="caption"), [])
