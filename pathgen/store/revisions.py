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

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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
    latency_s: float = 0.0
    cost: float = 0.0
    status: str = "ok"
    error: str | None = None
    edits: list[Any] | None = None
    created_by: str | None = None

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = utcnow()
        return data


async def insert_revisions(session: AsyncSession, revisions: Sequence[NewRevision]) -> list[int]:
    """Insert ``revisions`` in the caller's transaction; returns their ids in order."""
    if not revisions:
        return []
    stmt = insert(CaptionRevision).returning(CaptionRevision.id, sort_by_parameter_order=True)
    result = await session.execute(stmt, [r.row() for r in revisions])
    return list(result.scalars())


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


async def update_revision_text(session: AsyncSession, revision_id: int, text: str) -> None:
    """Always refuses: revisions are immutable. Kept so callers get a clear answer."""
    await get_revision(session, revision_id)
    raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=revision_id, verb="updated"))


async def delete_revision(session: AsyncSession, revision_id: int) -> None:
    """Always refuses: revisions are never deleted."""
    await get_revision(session, revision_id)
    raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=revision_id, verb="deleted"))


@event.listens_for(Session, "before_flush")
def _refuse_revision_mutation(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, CaptionRevision):
            raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=obj.id, verb="deleted"))
    for obj in session.dirty:
        if isinstance(obj, CaptionRevision) and session.is_modified(obj):
            raise ImmutableRevisionError(IMMUTABLE_MESSAGE.format(id=obj.id, verb="updated"))


class RevisionWriter:
    """Buffers revisions and writes them in batches (on size or after ``interval`` s).

    ``await writer.add(rev)`` returns once the revision is durably stored and
    yields its id, so a caller never reports a result that was not persisted.
    A failed batch is reported to every waiting caller.

    Example::

        async with RevisionWriter(engine) as writer:
            rev_id = await writer.add(NewRevision(...))
    """

    def __init__(self, engine: AsyncEngine, *, batch_size: int = 64, interval: float = 0.05):
        self._engine = engine
        self._batch_size = batch_size
        self._interval = interval
        self._pending: list[tuple[NewRevision, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    async def __aenter__(self) -> RevisionWriter:
        self._task = asyncio.create_task(self._run(), name="revision-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def add(self, revision: NewRevision) -> int:
        if self._closed:
            raise StoreError("revision writer is closed")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((revision, fut))
        if len(self._pending) >= self._batch_size:
            self._wake.set()
        return await fut

    async def _run(self) -> None:
        while not (self._closed and not self._pending):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: self._batch_size],
                self._pending[self._batch_size :],
            )
            try:
                ids = await append_revisions(self._engine, [rev for rev, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter must learn of the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(StoreError(f"could not store revisions: {exc}"))
                continue
            self.written += len(ids)
            for (_, fut), rev_id in zip(batch, ids, strict=True):
                if not fut.done():
                    fut.set_result(rev_id)

    async def aclose(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._flush()
