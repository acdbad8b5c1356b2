"""Worker identities, and reclaiming leases of local workers that died (kill -9)."""

from __future__ import annotations

import os
import secrets
import socket

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store.engine import read_scope, session_scope
from pathgen.store.models import WorkItem, utcnow


def _host() -> str:
    """This machine's name as leases record it (at most 64 characters: the column is 128)."""
    return socket.gethostname()[:64]


def new_owner() -> str:
    """``host:pid:random``, unique per worker process start (a claim appends a nonce)."""
    return f"{_host()}:{os.getpid()}:{secrets.token_hex(3)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process behind an owner or lease token (``host:pid:...``) still runs:
    True or False for a process on this machine, None when it cannot be told (another
    machine, or no owner)."""
    if not owner:
        return None
    parts = owner.split(":")  # host:pid:start-token[:claim-token]
    if len(parts) < 3 or parts[0] != _host() or not parts[1].isdigit():
        return None
    return _pid_alive(int(parts[1]))


async def lease_holders(engine: AsyncEngine, run_id: str) -> tuple[int, int]:
    """``(live, dead)``: processes holding unexpired leases of the run; a holder on
    another machine counts as live (its lease expires on its own if it is not)."""
    async with read_scope(engine) as session:
        owners = await session.scalars(
            select(WorkItem.lease_owner)
            .where(
                WorkItem.run_id == run_id,
                WorkItem.status == "leased",
                WorkItem.lease_expires_at >= utcnow(),
            )
            .distinct()
        )
        processes = {":".join(o.split(":")[:3]) for o in owners if o}
    dead = sum(1 for p in processes if owner_alive(p) is False)
    return len(processes) - dead, dead


async def reclaim_dead_local_leases(engine: AsyncEngine, run_id: str | None = None) -> int:
    """Expire leases held by processes on this host that no longer exist.

    Leases of remote workers expire on their own; this only saves a restarted local
    run from waiting out a dead process's lease.
    """
    async with session_scope(engine) as session:
        stmt = select(WorkItem.lease_owner).where(WorkItem.status == "leased").distinct()
        if run_id is not None:
            stmt = stmt.where(WorkItem.run_id == run_id)
        owners = [o for o in await session.scalars(stmt) if o]
        dead = [owner for owner in owners if owner_alive(owner) is False]
        if not dead:
            return 0
        res = await session.execute(
            update(WorkItem)
            .where(WorkItem.status == "leased", WorkItem.lease_owner.in_(dead))
            .values(lease_expires_at=utcnow(), last_error="lease expired: the worker died")
            .returning(WorkItem.id)
        )
        return len(res.all())
