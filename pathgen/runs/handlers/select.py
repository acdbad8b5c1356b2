"""The ``select`` stage: prompt retrieval + KMeans diversity + near-duplicate filter per slide.

Decisions are written in the run's current selection round (see
:mod:`pathgen.store.selections`) with the fingerprint of the model that made them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.runs.queue import Claimed, Completion, NewWork
from pathgen.runs.resources import Resources
from pathgen.runs.worker import PermanentError
from pathgen.store.engine import session_scope
from pathgen.store.models import Embedding, RetrievalPrompt, RunSlide, Selection, Slide
from pathgen.store.selections import current_round


async def handle_select(item: Claimed, res: Resources) -> Completion:
    from pathgen.embed import load_embeddings
    from pathgen.promptlib import load_library, prompts_for
    from pathgen.select.report import report_prompts
    from pathgen.select.tiles import select_tiles

    slide_id = int(item.key)
    clip = await res.clip()
    async with session_scope(res.engine) as session:
        slide = await session.get(Slide, slide_id)
        link = await session.get(RunSlide, (item.run_id, slide_id))
        round_no = await current_round(session, item.run_id)
        emb_row = (
            await session.scalars(
                select(Embedding).where(
                    Embedding.slide_id == slide_id,
                    Embedding.model_fingerprint == clip.fingerprint,
                )
            )
        ).first()
    if emb_row is None or not Path(emb_row.path).is_file():
        raise PermanentError(f"{slide.path}: no embeddings for model {clip.fingerprint}")
    tile_ids, emb, _ = await asyncio.to_thread(load_embeddings, emb_row.path)

    organ = (link.organ if link else None) or res.settings.run.organ
    library = await asyncio.to_thread(load_library)
    lib_prompts = prompts_for(organ, library)
    rep_prompts = (
        report_prompts(link.report_text, f"slide{slide_id}") if link and link.report_text else []
    )
    if res.settings.selection.llm_prompts and organ:
        cached = await _cached_llm_prompts(res, item.run_id, organ)
        lib_prompts = lib_prompts + (cached or await _write_llm_prompts(res, organ))
    lib_emb = await res.text_embeddings([p.text for p in lib_prompts])
    rep_emb = await res.text_embeddings([p.text for p in rep_prompts]) if rep_prompts else None

    result = await asyncio.to_thread(
        select_tiles,
        tile_ids,
        emb.astype(np.float32),
        res.settings.selection,
        prompt_ids=[p.id for p in lib_prompts],
        prompt_emb=lib_emb,
        report_emb=rep_emb,
    )
    kept = result.kept_ids
    rows = [
        {
            "run_id": item.run_id,
            "round": round_no,
            "model_fingerprint": clip.fingerprint,
            "tile_id": d.tile_id,
            "kept": d.kept,
            "reasons": d.reasons,
            "prompt_key": d.prompt_id,
            "score": d.score,
            "report_score": d.report_score,
            "cluster_id": d.cluster_id,
            "duplicate_of": d.duplicate_of,
        }
        for d in result.decisions
    ]

    async def persist(session: AsyncSession) -> None:
        await _store_prompts(session, item.run_id, None, lib_prompts)
        await _store_prompts(session, item.run_id, slide_id, rep_prompts)
        if rows:
            insert = _insert(session)
            stmt = insert(Selection).on_conflict_do_nothing(
                index_elements=["run_id", "round", "tile_id"]
            )
            await session.execute(stmt, rows)

    # A selection never changes a tile's describe input: tiles kept before keep their
    # captions (new_output=False leaves their finished items alone); new tiles are queued.
    return Completion(
        item,
        persist=persist,
        follow_up=[NewWork("describe", str(t)) for t in kept],
        result={"tiles": int(len(tile_ids)), "kept": len(kept), "k": result.k, "round": round_no},
        new_output=False,
    )


async def _cached_llm_prompts(res: Resources, run_id: str, organ: str) -> list[Any] | None:
    """LLM-written prompts for ``organ`` already stored with the run (written once per run)."""
    from pathgen.promptlib import RetrievalPrompt as Prompt

    async with session_scope(res.engine) as session:
        rows = list(
            await session.scalars(
                select(RetrievalPrompt).where(
                    RetrievalPrompt.run_id == run_id,
                    RetrievalPrompt.source == "llm",
                    RetrievalPrompt.organ == organ,
                    RetrievalPrompt.slide_id.is_(None),
                )
            )
        )
    if not rows:
        return None
    return [Prompt(id=r.prompt_key, source="llm", text=r.text, organ=organ) for r in rows]


async def _write_llm_prompts(res: Resources, organ: str) -> list[Any]:
    """Ask the configured LLM for retrieval prompts for ``organ`` (a failure is retried)."""
    from pathgen.errors import LLMError
    from pathgen.runs.worker import StageFailed
    from pathgen.select.llm_prompts import organ_prompts_request, parse_organ_prompts

    cfg = res.settings.selection
    request = organ_prompts_request(
        organ,
        cfg.llm_prompt_count,
        model=cfg.llm.model,
        temperature=cfg.llm.temperature,
        max_tokens=max(cfg.llm.max_tokens, 1024),
    )
    try:
        result = await (await res.client("select", cfg.llm)).complete(request)
        return parse_organ_prompts(result.text, organ)
    except LLMError as exc:
        raise StageFailed(
            f"LLM prompts for {organ}: {type(exc).__name__}: {exc}", retryable=True
        ) from exc


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


async def _store_prompts(
    session: AsyncSession, run_id: str, slide_id: int | None, prompts: list[Any]
) -> None:
    """Every retrieval prompt is stored with the run (library ones once per run)."""
    if not prompts:
        return
    cond = (
        RetrievalPrompt.slide_id.is_(None)
        if slide_id is None
        else (RetrievalPrompt.slide_id == slide_id)
    )
    have = set(
        await session.scalars(
            select(RetrievalPrompt.prompt_key).where(RetrievalPrompt.run_id == run_id, cond)
        )
    )
    new = list({p.id: p for p in prompts if p.id not in have}.values())
    if new:
        session.add_all(
            RetrievalPrompt(
                run_id=run_id,
                slide_id=slide_id,
                prompt_key=p.id,
                source=p.source,
                organ=p.organ,
                text=p.text,
            )
            for p in new
        )
