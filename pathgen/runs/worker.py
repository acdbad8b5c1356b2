"""The async worker: claims items of its stages, runs their handlers, completes them.

Concurrency is bounded per stage (an item whose results are being committed no longer
counts, so the next one starts meanwhile); completions are batched into few transactions;
leases are kept alive by a heartbeat; a stop request (SIGINT/SIGTERM) stops claiming,
lets in-flight items finish for ``grace_s`` seconds, then releases what is left.

Example::

    worker = Worker(engine, handlers, run_id="r1", exit_when_idle=True)
    stats = await worker.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import ConfigError, PathgenError, ProviderError
from pathgen.runs import queue
from pathgen.runs.owner import new_owner
from pathgen.runs.queue import Claimed, Completion, Persist
from pathgen.store.outage import is_database_outage

if TYPE_CHECKING:
    from pathgen.runs.budget import Budget

log = logging.getLogger("pathgen.worker")


class PermanentError(PathgenError):
    """A handler failure that no retry will fix: the item is parked at once."""


class StageFailed(PathgenError):
    """A stage call failed; ``persist`` records the failure when the item is parked."""

    def __init__(self, message: str, *, retryable: bool, persist: Persist | None = None) -> None:
        self.retryable = retryable
        self.persist = persist
        super().__init__(message)


@dataclass
class StageHandler:
    stage: str
    concurrency: int
    handle: Callable[[Claimed], Awaitable[Completion]]


@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    released: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, PermanentError | ConfigError):
        return False
    if isinstance(exc, StageFailed):
        return exc.retryable
    if isinstance(exc, ProviderError):
        return exc.retryable
    return True


class _CompletionBuffer:
    """Collects completions and commits them in batches; ``add`` returns once committed.

    A batch is committed when it is full, when ``interval`` has passed, or when the worker
    calls :meth:`kick` (nothing else can join the batch).
    """

    def __init__(self, engine: AsyncEngine, batch: int = 32, interval: float = 0.05) -> None:
        self._engine = engine
        self._batch = batch
        self._interval = interval
        self._pending: list[tuple[Completion, asyncio.Future[bool]]] = []
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()

    async def add(self, completion: Completion) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((completion, fut))
        if len(self._pending) >= self._batch:
            self._kick.set()
        return await fut

    @property
    def waiting(self) -> int:
        """Completions waiting to be committed."""
        return len(self._pending)

    def kick(self) -> None:
        """Commit what is waiting now."""
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() and not self._pending):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._interval)
            self._kick.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending[: self._batch], self._pending[self._batch :]
                try:
                    won = await queue.complete(self._engine, [c for c, _ in batch])
                except Exception as exc:  # noqa: BLE001 - hand the error to every waiter
                    if len(batch) > 1:  # isolate the item whose results cannot be written
                        self._pending[:0] = [(c, f) for c, f in batch[1:]]
                        batch = batch[:1]
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), ok in zip(batch, won, strict=True):
                    if not fut.done():
                        fut.set_result(ok)


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        handlers: Sequence[StageHandler],
        *,
        run_id: str | None = None,
        owner: str | None = None,
        lease_s: float = 120.0,
        exit_when_idle: bool = False,
        poll_s: float = 0.25,
        grace_s: float = 30.0,
        stop: asyncio.Event | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.engine = engine
        #: Spending limit checked before each claim of a paid stage (None: no limit).
        self.budget = budget
        self.handlers = {h.stage: h for h in handlers}
        self.run_id = run_id
        self.owner = owner or new_owner()
        self.lease_s = lease_s
        self.exit_when_idle = exit_when_idle
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.stop = stop or asyncio.Event()
        self.stats = WorkerStats()
        self._inflight: dict[asyncio.Task[None], Claimed] = {}
        #: In-flight tasks whose handler has returned and whose results are being committed:
        #: they keep their lease but no longer count against the stage's concurrency.
        self._committing: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def _free(self, stage: str) -> int:
        busy = sum(
            1
            for task, item in self._inflight.items()
            if item.stage == stage and task not in self._committing
        )
        return self.handlers[stage].concurrency - busy

    async def run(self) -> WorkerStats:
        buffer = _CompletionBuffer(self.engine)
        buffer_stop = asyncio.Event()
        side = [
            asyncio.create_task(buffer.run(buffer_stop), name="completions"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        try:
            await self._claim_loop(buffer)
            await self._drain()
        finally:
            buffer_stop.set()
            await side[0]
            side[1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await side[1]
        return self.stats

    async def _claim_loop(self, buffer: _CompletionBuffer) -> None:
        # Downstream stages first, so work flows through the pipeline and memory stays flat.
        stages = list(self.handlers)[::-1]
        while not self.stop.is_set():
            # Every item in flight waits for its commit: nothing can join the batch. Commit
            # it once the next items are claimed, so it overlaps their work, not the claim.
            all_waiting = 0 < len(self._inflight) <= buffer.waiting
            claimed = 0
            for stage in stages:
                free = self._free(stage)
                if free > 0 and self.budget is not None:
                    free = await self.budget.allow(stage, free)
                if free <= 0:
                    continue
                items = await queue.claim(
                    self.engine,
                    owner=self.owner,
                    stages=[stage],
                    limit=free,
                    run_id=self.run_id,
                    lease_s=self.lease_s,
                )
                for item in items:
                    task = asyncio.create_task(
                        self._process(item, buffer), name=f"{stage}:{item.key}"
                    )
                    self._inflight[task] = item
                claimed += len(items)
            if all_waiting:
                buffer.kick()
            if claimed:
                continue
            if self.exit_when_idle and not self._inflight and await self._run_finished():
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _run_finished(self) -> bool:
        if self.run_id is None:
            return False
        counts = await queue.counts(self.engine, self.run_id)
        held = self.budget.held if self.budget is not None else set()
        return all(
            n == 0
            for stage, by in counts.items()
            if stage in self.handlers  # work of other stages is other workers' business
            for st, n in by.items()
            if st == "leased" or (st == "queued" and stage not in held)  # held: budget spent
        )

    async def _process(self, item: Claimed, buffer: _CompletionBuffer) -> None:
        task = asyncio.current_task()
        try:
            completion = await self.handlers[item.stage].handle(item)
            self._committing.add(task)  # type: ignore[arg-type]
            self._wake.set()  # the next item can start while this one commits
            if await buffer.add(completion):
                self.stats.done += 1
                self.stats.by_stage[item.stage] = self.stats.by_stage.get(item.stage, 0) + 1
            else:
                self.stats.lost += 1
                log.warning("lease lost before completion: %s %s", item.stage, item.key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the item
            message = f"{type(exc).__name__}: {exc}"
            if is_database_outage(exc):  # not the item's fault: it keeps its attempt
                self.stats.released += await queue.release(self.engine, [item])
                log.warning("database unavailable during %s %s: released", item.stage, item.key)
                return
            status = await queue.fail(
                self.engine,
                item,
                message,
                retry=_retryable(exc),
                persist_if_parked=getattr(exc, "persist", None),
            )
            if status == "failed":
                self.stats.failed += 1
                log.error(
                    "parked %s %s after %d attempt(s): %s",
                    item.stage,
                    item.key,
                    item.attempts,
                    message,
                )
            elif status == "queued":
                self.stats.retried += 1
                log.warning("retrying %s %s: %s", item.stage, item.key, message)
        finally:
            self._inflight.pop(task, None)  # type: ignore[arg-type]
            self._committing.discard(task)  # type: ignore[arg-type]
            self._wake.set()

    async def _drain(self) -> None:
        if not self._inflight:
            return
        tasks = list(self._inflight)
        _, pending = await asyncio.wait(tasks, timeout=self.grace_s)
        if pending:
            items = [self._inflight[t] for t in pending if t in self._inflight]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.stats.released += await queue.release(self.engine, items)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            items = list(self._inflight.values())
            if items:
                try:
                    await queue.heartbeat(self.engine, items, self.lease_s)
                except Exception as exc:  # noqa: BLE001 - a missed beat is retried next time
                    log.warning("heartbeat failed: %s", exc)
