"""Selection rounds: which tiles a run keeps now, and what each earlier round kept.

Round 0 is a run's first selection; ``pathgen run --redo select`` starts a new round
(usually with a retrained CLIP), whose rows are written slide by slide as the select
stage runs again. A slide's *current* selection is its rows in the newest round it has.
Tiles that a re-selection (round > 0) no longer keeps leave the dataset (see
:func:`dropped_tiles`); their captions stay in the store.

Example::

    async with session_scope(engine) as session:
        n = await current_round(session, "run-1")
        kept = await round_tiles(session, "run-1", 0)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.store.models import Selection, SelectionRound, Tile


async def current_round(session: AsyncSession, run_id: str) -> int:
    """The round new selections of ``run_id`` are written in (0 until a re-selection)."""
    value = await session.scalar(
        select(func.max(SelectionRound.round)).where(SelectionRound.run_id == run_id)
    )
    return int(value or 0)


async def rounds(session: AsyncSession, run_id: str) -> dict[int, dict[str, Any]]:
    """``{round: settings}`` of the rounds recorded for ``run_id``."""
    rows = await session.scalars(
        select(SelectionRound).where(SelectionRound.run_id == run_id).order_by(SelectionRound.round)
    )
    return {r.round: dict(r.settings) for r in rows}


def _newest_rounds(run_ids: list[str]) -> Any:
    return (
        select(
            Selection.run_id.label("run_id"),
            Tile.slide_id.label("slide_id"),
            func.max(Selection.round).label("round"),
        )
        .join(Tile, Tile.id == Selection.tile_id)
        .where(Selection.run_id.in_(run_ids))
        .group_by(Selection.run_id, Tile.slide_id)
        .subquery()
    )


def current_selection(run_ids: list[str]) -> Select[Any]:
    """Selection rows of each slide's newest round in each of ``run_ids``."""
    newest = _newest_rounds(run_ids)
    return (
        select(Selection)
        .join(Tile, Tile.id == Selection.tile_id)
        .join(
            newest,
            and_(
                newest.c.run_id == Selection.run_id,
                newest.c.slide_id == Tile.slide_id,
                newest.c.round == Selection.round,
            ),
        )
    )


def dropped_tiles(run_id: str) -> Select[Any]:
    """Ids of tiles on slides re-selected in ``run_id`` (newest round > 0) that the newest
    round does not keep."""
    newest = _newest_rounds([run_id])
    reselected = select(newest.c.slide_id).where(newest.c.round > 0)
    kept_now = (
        current_selection([run_id])
        .with_only_columns(Selection.tile_id)
        .where(Selection.kept.is_(True))
    )
    return select(Tile.id).where(Tile.slide_id.in_(reselected), Tile.id.not_in(kept_now))


async def round_tiles(session: AsyncSession, run_id: str, round_no: int | None) -> dict[int, Any]:
    """``{tile_id: Selection}`` of the tiles kept in ``round_no`` (None: the current selection)."""
    if round_no is None:
        stmt = current_selection([run_id]).where(Selection.run_id == run_id)
    else:
        stmt = select(Selection).where(Selection.run_id == run_id, Selection.round == round_no)
    rows = await session.scalars(stmt.where(Selection.kept.is_(True)))
    return {r.tile_id: r for r in rows}
