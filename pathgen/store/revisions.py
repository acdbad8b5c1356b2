"""Caption revisions: append-only storage with provenance.

A stored revision's text is never updated or deleted; a correction is a new
revision (stage ``human`` for curators) whose parent is the corrected one. This
is enforced three times: this API offers no mutation, the ORM refuses to flush a
changed or deleted revision, and the database itself has triggers (see the
initial migration) that reject ``UPDATE OF text`` and ``DELETE``.

Example::

    ids = await append_revisions(engine, [NewRevision(tile_id=1, run_id="r", stage="describe",
                                                      text="...", provider="offline", model="m")])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from pathgen.errors import ImmutableRevisionError, StoreError
from pathgen.store.engine import session_scope
from pathgen.store.models import CaptionRevision, utcnow

IMMUTABLE_MESSAGE = (
    "caption revisions are append-only: revision {id} cannot be {verb}; "
    "store the correction as a new revision (stage 'human') whose parent is {id}"
)


@dataclass
class NewRevision:
    tile_id: int
    run_id: str
    stage: str
    text: str
    provider: str
    model: str
    parent_id: int | None = None
    parent_ids: list[int] | None = None
    branch: str = "caption"
    template_name: str | None = None
    template_hash: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    latency_s: float = 0.0
    cost: float = 0.0
    status: str = "ok"
    error: str | None = None
    edits: list[Any] | None = None
    created_by: str | None = None

    def row(self) -> dict[str, Any]:
        """The column values (a shallow copy: the JSON columns are serialised on insert)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["created_at"] = utcnow()
        return data


_FIELDS = tuple(f.name for f in fields(NewRevision))


async def insert_revisions(session: AsyncSession, revisions: Sequence[NewRevision]) -> list[int]:
    """Insert ``revisions`` in the caller's transaction; returns their ids in order."""
    if not revisions:
        return []
    stmt = insert(CaptionRevision).returning(CaptionRevision.id, sort_by_parameter_order=True)
    result = await session.execute(stmt, [r.row() for r in revisions])
    return list(result.scalars())


async def add_revisions(session: AsyncSession, revisions: Sequence[NewRevision]) -> None:
    """Insert ``revisions`` in the caller's transaction as one batch (ids not returned:
    a ``RETURNING`` in insertion order makes SQLite insert row by row). A Core insert on
    the table: the ORM's bulk path costs more CPU per row and adds nothing here."""
    if revisions:
        await session.execute(insert(CaptionRevision.__table__), [r.row() for r in revisions])


async def append_revisions(engine: AsyncEngine, revisions: Sequence[NewRevision]) -> list[int]:
    """Insert ``revisions`` in one transaction of their own."""
    async with session_scope(engine) as session:
        return await insert_revisions(session, revisions)


async def get_revision(session: AsyncSession, revision_id: int) -> CaptionRevision:
    rev = await session.get(CaptionRevision, revision_id)
    if rev is None:
        raise StoreError(f"caption revision {revision_id} does not exist")
    return rev


async def revision_chain(session: AsyncSession, revision_id: int) -> list[CaptionRevision]:
    """The revision and its ancestors through ``parent_id``, oldest first."""
    chain: list[CaptionRevision] = []
    current: int | None = revision_id
    while current is not None:
        rev = await get_revision(session, current)
        chain.append(rev)
        current = rev.parent_id
    return chain[::-1]


async def tile_revisions(
    session: AsyncSession, tile_id: int, run_id: str | None = None
) -> list[CaptionRevision]:
    """Every revision of a tile (optionally within one run), oldest first."""
    stmt = select(CaptionRevision).where(CaptionRevision.tile_id == tile_id)
    if run_id is not None:
        stmt = stmt.where(CaptionRevision.run_id == run_id)
    rows = await session.scalars(stmt.order_by(CaptionRevision.id))
    return list(rows)


@event.listens_for(Session, "before_flush")
def _refuse_revision_mutation(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, CaptionRevision):
            raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=obj.id, verb="deleted"))
    for obj in session.dirty:
        if isinstance(obj, CaptionRevision) and session.is_modified(obj):
            raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=obj.id, verb="updated"))
