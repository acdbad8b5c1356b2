"""Instruct items: append-only instruction-tuning / VQA records with provenance, and reviews.

Like caption revisions, an item is never updated or deleted; enforced three times: this
API offers no mutation, the ORM refuses to flush a changed or deleted item, and the
database has triggers (migration 0006). A curator's correction is a new item (provider
``human``) whose ``parent_id`` is the corrected one; the newest item of a chain is the
*current* one, and its newest review decides whether it is exported.

Example::

    ids = await append_items(engine, [NewInstructItem(run_id="r", tile_id=1, revision_id=9,
        kind="yesno", turns=[{"question": "...", "answer": "Yes", "kind": "yesno"}],
        provider="offline", model="templates", verify_status="passed")])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from pathgen.errors import ImmutableRevisionError, StoreError
from pathgen.store.engine import session_scope
from pathgen.store.models import InstructItem, InstructReview, utcnow
from pathgen.types import INSTRUCT_KINDS

DECISIONS = ("accept", "reject", "edit")
IMMUTABLE_MESSAGE = (
    "instruct items are append-only: item {id} cannot be {verb}; "
    "store the correction as a new item whose parent is {id}"
)


@dataclass
class NewInstructItem:
    run_id: str
    tile_id: int
    revision_id: int
    kind: str
    turns: list[dict[str, Any]]
    provider: str
    model: str
    verify_status: str
    verify_reason: str | None = None
    verifier: str | None = None
    parent_id: int | None = None
    template_name: str | None = None
    template_hash: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost: float = 0.0
    created_by: str | None = None

    def row(self) -> dict[str, Any]:
        if self.kind not in INSTRUCT_KINDS:
            raise StoreError(
                f"instruct item kind must be one of {INSTRUCT_KINDS}, not {self.kind!r}"
            )
        data = asdict(self)
        data["created_at"] = utcnow()
        return data


async def insert_items(session: AsyncSession, items: Sequence[NewInstructItem]) -> list[int]:
    """Insert ``items`` in the caller's transaction; returns their ids in order."""
    if not items:
        return []
    stmt = insert(InstructItem).returning(InstructItem.id, sort_by_parameter_order=True)
    result = await session.execute(stmt, [i.row() for i in items])
    return list(result.scalars())


async def append_items(engine: AsyncEngine, items: Sequence[NewInstructItem]) -> list[int]:
    """Insert ``items`` in one transaction of their own."""
    async with session_scope(engine) as session:
        return await insert_items(session, items)


async def current_items(
    session: AsyncSession, run_id: str, tile_ids: Sequence[int] | None = None
) -> list[InstructItem]:
    """The run's items that no later item supersedes (edits replace their parent), by id."""
    stmt = select(InstructItem).where(InstructItem.run_id == run_id)
    if tile_ids is not None:
        stmt = stmt.where(InstructItem.tile_id.in_(list(tile_ids)))
    rows = list(await session.scalars(stmt.order_by(InstructItem.id)))
    replaced = {r.parent_id for r in rows if r.parent_id is not None}
    return [r for r in rows if r.id not in replaced]


async def latest_item_reviews(
    session: AsyncSession, run_id: str, item_ids: Sequence[int] | None = None
) -> dict[int, InstructReview]:
    """``{item id: newest review}`` of the run's items."""
    newest = (
        select(func.max(InstructReview.id))
        .where(InstructReview.run_id == run_id)
        .group_by(InstructReview.item_id)
    )
    if item_ids is not None:
        newest = newest.where(InstructReview.item_id.in_(list(item_ids)))
    rows = await session.scalars(
        select(InstructReview).where(InstructReview.id.in_(newest.scalar_subquery()))
    )
    return {r.item_id: r for r in rows}


async def review_item(
    session: AsyncSession,
    *,
    item_id: int,
    decision: str,
    reviewer: str,
    note: str | None = None,
) -> InstructReview:
    """Record an accept / reject (or edit) decision on an item."""
    if decision not in DECISIONS:
        raise StoreError(f"review decision must be one of {DECISIONS}, not {decision!r}")
    if not reviewer.strip():
        raise StoreError("a review needs a reviewer name")
    item = await session.get(InstructItem, item_id)
    if item is None:
        raise StoreError(f"instruct item {item_id} does not exist")
    review = InstructReview(
        run_id=item.run_id,
        item_id=item_id,
        decision=decision,
        reviewer=reviewer,
        note=note,
        created_at=utcnow(),
    )
    session.add(review)
    await session.flush()
    return review


async def edit_item(
    session: AsyncSession, *, item_id: int, turns: list[dict[str, Any]], reviewer: str
) -> int:
    """Store a curator's corrected turns as a new item (parent: ``item_id``) and an edit review.

    A curator's answer counts as verified (``verifier`` = ``curator``).
    """
    old = await session.get(InstructItem, item_id)
    if old is None:
        raise StoreError(f"instruct item {item_id} does not exist")
    if not turns or any(not str(t.get("question", "")).strip() for t in turns):
        raise StoreError("an edited instruct item needs turns with a question and an answer")
    if any(not str(t.get("answer", "")).strip() for t in turns):
        raise StoreError("an edited instruct item needs turns with a question and an answer")
    (new_id,) = await insert_items(
        session,
        [
            NewInstructItem(
                run_id=old.run_id,
                tile_id=old.tile_id,
                revision_id=old.revision_id,
                kind=old.kind,
                turns=turns,
                provider="human",
                model="curator",
                verify_status="passed",
                verifier="curator",
                parent_id=old.id,
                params=dict(old.params or {}),
                created_by=reviewer,
            )
        ],
    )
    await review_item(session, item_id=new_id, decision="edit", reviewer=reviewer)
    return new_id


@event.listens_for(Session, "before_flush")
def _refuse_item_mutation(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, InstructItem):
            raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=obj.id, verb="deleted"))
    for obj in session.dirty:
        if isinstance(obj, InstructItem) and session.is_modified(obj):
            raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=obj.id, verb="updated"))
