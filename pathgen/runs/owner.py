"""Worker identities, and reclaiming leases of local workers that died (kill -9)."""

from __future__ import annotations

import os
import secrets
import socket

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store.engine import session_scope
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


async def reclaim_dead_local_leases(engine: AsyncEngine, run_id: str | None = None) -> int:
    """Expire leases held by processes on this host that no longer exist.

    Leases of remote workers expire on their own; this only saves a restarted local
    run from waiting out a dead process's lease.
    """
    host = _host()
    async with session_scope(engine) as session:
        stmt = select(WorkItem.lease_owner).where(WorkItem.status == "leased").distinct()
        if run_id is not None:
            stmt = stmt.where(WorkItem.run_id == run_id)
        owners = [o for o in await session.scalars(stmt) if o]
        dead = []
        for owner in owners:
            parts = owner.split(":")  # host:pid:start-token:claim-token
            local = len(parts) >= 3 and parts[0] == host and parts[1].isdigit()
            if local and not _pid_alive(int(parts[1])):
                dead.append(owner)
        if not dead:
            return 0
        res = await session.execute(
            update(WorkItem)
            .where(WorkItem.status == "leased", WorkItem.lease_owner.in_(dead))
            .values(lease_expires_at=utcnow(), last_error="lease expired: the worker died")
            .returning(WorkItem.id)
        )
        return len(res.all())
