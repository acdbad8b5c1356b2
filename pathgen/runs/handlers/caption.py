"""The caption stages: describe → degrade → revise → summarize, one tile per item.

Keys: ``describe``/``fuse``/``revise``/``summarize`` items are keyed by tile id (the
caption path); ``degrade`` items by ``"<tile>:<copy>"`` and the reviser's pass over a degraded
copy by ``"<tile>:degraded:<copy>"``. The worker reads what a claimed batch needs in one
go (:func:`prepare_batch`); each handler finds its input revision there, writes its output
as a new revision in the completion transaction, and queues the next stage. A failed
call is retried by the queue when its error is transient, parked at once when it is
permanent (unusable output, rejected request), and pauses the stage for the run when no
call of the stage can work (bad key, unknown model or URL); when parked, a failed
revision with the error is stored, so nothing is silently missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pathgen.errors import LLMError
from pathgen.llm.base import ImagePart
from pathgen.runs.handlers.caption_inputs import (
    TileInputs,
    latest,
    load_inputs,
    newest_per_describer,
    tile_ids,
)
from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.resources import Resources
from pathgen.runs.worker import PermanentError, StageFailed
from pathgen.store.revisions import NewRevision


async def prepare_batch(res: Resources, run_id: str, items: Sequence[Claimed]) -> dict[int, Any]:
    """``{item id: TileInputs}`` for a claimed batch of one run: one read for all."""
    inputs = await load_inputs(res.engine, run_id, tile_ids(i.key for i in items))
    return {i.id: inputs[int(i.key.split(":", 1)[0])] for i in items}


async def _inputs(res: Resources, item: Claimed, inputs: TileInputs | None) -> TileInputs:
    """The item's prepared inputs, or read them now (when the batch read failed)."""
    if inputs is None:
        inputs = (await prepare_batch(res, item.run_id, [item]))[item.id]
    if inputs.tile is None:
        raise PermanentError(f"tile {item.key.split(':', 1)[0]} does not exist")
    return inputs


async def _image(res: Resources, inputs: TileInputs, max_side: int) -> ImagePart:
    """The tile as the JPEG the VLM stages send (read and encoded once, see TileImages)."""
    return await res.images.tile(inputs.tile, max_side)


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


def _failure(revs: Sequence[NewRevision], outs: Sequence[Any]) -> StageFailed:
    """The failure of a call, classed by the error it carries (never by its text)."""
    errors: list[LLMError] = [o.failure for o in outs if o.failure is not None]
    calls = sum(o.attempts for o in outs)
    message = "; ".join(r.error or "failed" for r in revs)
    return StageFailed(
        f"{message} ({calls} request(s) in this attempt)",
        retryable=any(e.transient for e in errors),
        pause=next((e for e in errors if e.pauses_stage), None),
        revisions=list(revs),
        retry_after_s=max((getattr(e, "retry_after", None) or 0.0 for e in errors), default=0.0),
    )


def _finish(item: Claimed, rev: NewRevision, out: Any, follow_up: list[NewWork]) -> Completion:
    """A successful output completes the item; a failed one is retried, parked or pauses."""
    if rev.status == "ok":
        return Completion(item, revisions=[rev], follow_up=follow_up)
    raise _failure([rev], [out])


def _same_config(existing: Any, cfg: Any, default_template: str | None) -> bool:
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
    existing: Any,
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


def _description(res: Resources, inputs: TileInputs) -> Any:
    """The description later stages work on: the fused one when fusion is on."""
    stage = "fuse" if res.settings.captioning.describers else "describe"
    return latest(inputs.revisions, stage, "caption")


async def handle_describe(item: Claimed, res: Resources, inputs: TileInputs | None) -> Completion:
    from pathgen.stages import DescribeInput, run_describe

    tile_id = int(item.key)
    cfg = res.settings.captioning
    describers = [cfg.describe, *cfg.describers]
    fusion = len(describers) > 1
    follow = [NewWork("fuse", item.key)] if fusion else _after_description(item.key, cfg)
    found = await _inputs(res, item, inputs)
    existing = latest(found.revisions, "describe", "caption")
    if skipped := _skip(item, existing, follow, cfg.describe, "describe_v1"):
        return skipped
    examples = []
    if cfg.few_shot_k:
        examples = await res.few_shot.examples(found.tile, cfg.few_shot_k)
    clients = [await res.client("describe", c) for c in describers]
    images = [await _image(res, found, c.image_max_side) for c in describers]
    texts = tuple(e.text for e in examples)
    outs = await asyncio.gather(
        *(
            run_describe(client, c, DescribeInput(image=image, report=found.report, examples=texts))
            for client, c, image in zip(clients, describers, images, strict=True)
        )
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
        return Completion(item, revisions=revs, follow_up=follow)
    raise _failure(revs, outs)


async def handle_fuse(item: Claimed, res: Resources, inputs: TileInputs | None) -> Completion:
    from pathgen.stages import run_fuse

    tile_id = int(item.key)
    cfg = res.settings.captioning
    follow = _after_description(item.key, cfg)
    found = await _inputs(res, item, inputs)
    existing = latest(found.revisions, "fuse", "caption")
    if skipped := _skip(item, existing, follow, cfg.fuse, "fuse_v1"):
        return skipped
    sources = newest_per_describer(found.revisions)
    if not sources:
        raise PermanentError(f"tile {tile_id}: no description to fuse")
    out = await run_fuse(await res.client("fuse"), cfg.fuse, [r.text for r in sources])
    rev = _revision(item, tile_id, out, parent_id=sources[0].id, branch="caption")
    rev.parent_ids = [r.id for r in sources]
    return _finish(item, rev, out, follow)


async def handle_degrade(item: Claimed, res: Resources, inputs: TileInputs | None) -> Completion:
    from pathgen.stages import run_degrade, seed_from_key

    tile_s, copy_s = item.key.split(":")
    tile_id, copy = int(tile_s), int(copy_s)
    follow = [NewWork("revise", f"{tile_id}:degraded:{copy}")]
    found = await _inputs(res, item, inputs)
    source = _description(res, found)
    if source is None:
        raise PermanentError(f"tile {tile_id}: no description to degrade")
    existing = latest(found.revisions, "degrade", "degraded", copy=copy)
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
    return _finish(item, rev, out, follow)


async def handle_revise(item: Claimed, res: Resources, inputs: TileInputs | None) -> Completion:
    from pathgen.stages import run_revise

    parts = item.key.split(":")
    tile_id = int(parts[0])
    found = await _inputs(res, item, inputs)
    if len(parts) == 1:  # the caption path: revise the description
        branch, follow = "caption", [NewWork("summarize", item.key)]
        source = _description(res, found)
        extra: dict[str, Any] = {}
    else:  # the reviser's pass over a degraded copy
        copy = int(parts[2])
        branch, follow = "degraded", []
        source = latest(found.revisions, "degrade", "degraded", copy=copy)
        extra = {"copy": copy}
    if source is None:
        raise PermanentError(f"revise {item.key}: its input revision is missing")
    existing = latest(found.revisions, "revise", branch, parent_id=source.id)
    cfg = res.settings.captioning.revise
    if skipped := _skip(item, existing, follow, cfg, "revise_v1"):
        return skipped
    client = await res.client("revise")
    image = await _image(res, found, cfg.image_max_side)
    out = await run_revise(client, cfg, source.text, image=image, input_kind=source.stage)
    rev = _revision(item, tile_id, out, parent_id=source.id, branch=branch, extra_params=extra)
    return _finish(item, rev, out, follow)


async def handle_summarize(item: Claimed, res: Resources, inputs: TileInputs | None) -> Completion:
    from pathgen.stages import run_summarize

    tile_id = int(item.key)
    found = await _inputs(res, item, inputs)
    source = latest(found.revisions, "revise", "caption")
    if source is None:
        raise PermanentError(f"tile {tile_id}: no revised description to summarize")
    existing = latest(found.revisions, "summarize", "caption", parent_id=source.id)
    cfg = res.settings.captioning
    if skipped := _skip(item, existing, [], cfg.summarize, "summarize_v1"):
        return skipped
    count_tokens = await res.count_tokens()
    client = await res.client("summarize")
    out = await run_summarize(
        client, cfg.summarize, source.text, count_tokens, max_clip_tokens=cfg.max_clip_tokens
    )
    rev = _revision(item, tile_id, out, parent_id=source.id, branch="caption")
    return _finish(item, rev, out, [])
