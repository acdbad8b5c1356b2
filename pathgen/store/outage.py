"""Riding out a database outage: Postgres restarting, a network blip, a stuck SQLite lock.

Once an engine has connected, its queue operations retry *transient* errors (refused or
reset connections, a server shutting down or still starting, too many connections, a lock
held past the busy timeout) with backoff for up to :data:`MAX_OUTAGE_S`, logging once
when the database goes away and once when it is back. Anything else (a constraint
violation, a bad query, a database this engine never reached) propagates at once.

Example::

    @rides_out_outages("claim")
    async def claim(engine, ...): ...  # the engine is the first argument

    labels = await ride_out(engine, "status", lambda: snapshot(engine, run_id))
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: How long a queue operation waits for the database to come back before giving up.
MAX_OUTAGE_S = 600.0
#: Postgres SQLSTATEs that mean "try again later": connection exceptions (class 08),
#: admin/crash shutdown, cannot connect now (starting up), too many connections.
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        err = todo.pop()
        if err is None or any(err is s for s in seen):
            continue
        seen.append(err)
        todo.extend([err.__cause__, err.__context__, getattr(err, "orig", None)])
    return seen


def connection_problem(exc: BaseException) -> str | None:
    """What keeps pathgen from using the database, in words for the operator, or ``None``
    when ``exc`` is not a connection problem (it is then a bug or bad data, not setup)."""
    advice = "check database.url in the config (or PATHGEN_DB_URL)"
    for err in _chain(exc):
        state = getattr(err, "sqlstate", None)
        first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        if state == "3D000":
            return f"the database does not exist ({first}): create it, or {advice}"
        if state in ("28P01", "28000"):
            return f"the database refused the login ({first}): {advice}"
        if isinstance(err, sqlite3.OperationalError) and "unable to open" in first:
            return f"cannot open the SQLite database ({first}): does its folder exist? {advice}"
        if state == "42P01" or (
            isinstance(err, sqlite3.OperationalError) and first.startswith("no such table")
        ):
            return (
                f"the database has no pathgen schema ({first}): run `pathgen db upgrade` "
                f"(`pathgen run` does it too), or {advice}"
            )
    if is_transient(exc):
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return f"cannot reach the database ({first}): is the server running? {advice}"
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is (briefly) unreachable, not that the work is bad."""
    for err in _chain(exc):
        if isinstance(err, ConnectionError | TimeoutError | sa_exc.TimeoutError):
            return True
        if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
            return True
        state = getattr(err, "sqlstate", None)
        if isinstance(state, str) and (state.startswith("08") or state in TRANSIENT_SQLSTATES):
            return True
        name = type(err).__name__
        if name in ("ConnectionDoesNotExistError", "ConnectionFailureError"):  # asyncpg
            return True
        if name == "InterfaceError" and "connection is closed" in str(err):
            return True
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            return True
    return False


def is_database_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is a transient error *of the database* (not, say, of an LLM endpoint,
    whose refused connections are also transient but are the provider's business)."""
    if not is_transient(exc):
        return False
    return any(
        isinstance(err, sa_exc.SQLAlchemyError | sqlite3.Error)
        or type(err).__module__.startswith("asyncpg")
        for err in _chain(exc)
    )


#: When the current outage began (monotonic), shared by every waiting operation so that
#: an outage is logged once when it starts and once when it ends.
_outage: dict[str, float] = {}
#: Engines that connected at least once: a database never reached is a setup error
#: (wrong host, server not started), reported at once rather than waited for.
_connected: weakref.WeakSet[Any] = weakref.WeakSet()


def watch(engine: AsyncEngine) -> None:
    """Note ``engine``'s first successful connection (called by ``make_engine``)."""
    sync = engine.sync_engine
    ref = weakref.ref(sync)

    def on_connect(*_: object) -> None:
        target = ref()
        if target is not None:
            _connected.add(target)

    event.listen(sync, "connect", on_connect)


def has_connected(engine: AsyncEngine) -> bool:
    return engine.sync_engine in _connected


async def ride_out(
    engine: AsyncEngine,
    what: str,
    call: Callable[[], Awaitable[T]],
    max_wait_s: float | None = None,
) -> T:
    """``await call()``, retrying transient errors of ``engine``'s database for up to
    ``max_wait_s`` (default :data:`MAX_OUTAGE_S`)."""
    limit = MAX_OUTAGE_S if max_wait_s is None else max_wait_s
    delay = 0.25
    down_since: float | None = None
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not is_transient(exc) or not has_connected(engine):
                raise  # a real error, or a database this engine never reached: fail fast
            now = time.monotonic()
            down_since = down_since or now
            if "since" not in _outage:
                _outage["since"] = now
                first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
                log.warning(
                    "database unavailable (%s: %s: %s); waiting up to %.0f s for it",
                    what,
                    type(exc).__name__,
                    first_line,
                    limit,
                )
            if now - down_since >= limit:
                log.error("database still unavailable after %.0f s (%s): giving up", limit, what)
                raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)
            continue
        since = _outage.pop("since", None)
        if since is not None:
            log.warning("database back after %.1f s", time.monotonic() - since)
        return result


def rides_out_outages(
    what: str,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate an async database operation whose first argument is its engine so that it
    rides out outages (see module)."""

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def inner(*args: P.args, **kwargs: P.kwargs) -> T:
            engine = args[0] if args else kwargs["engine"]
            assert isinstance(engine, AsyncEngine), f"{fn.__qualname__}: engine comes first"
            return await ride_out(engine, what, lambda: fn(*args, **kwargs))

        return inner

    return wrap
