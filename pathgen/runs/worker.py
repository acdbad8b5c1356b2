"""The async worker: claims items of its stages, runs their handlers, completes them.

Concurrency is bounded per stage (an item whose results are being committed no longer
counts, so the next one starts meanwhile); a stage refills in claims of 1/16 of its limit
as items return, and a claimed batch's inputs can be read in one go (``prepare``);
completions are batched into few transactions; a stage-pausing error (e.g. HTTP 404 for
the configured model) pauses the stage for its run; leases are kept alive by a heartbeat;
a stop request (SIGINT/SIGTERM) stops claiming, lets in-flight items finish for
``grace_s`` seconds, then releases what is left.

Example::

    worker = Worker(engine, handlers, run_id="r1", exit_when_idle=True)
    stats = await worker.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pathgen.errors import ConfigError, LLMError, PathgenError, ProviderError
from pathgen.runs import queue
from pathgen.runs.owner import new_owner
from pathgen.runs.queue import Claimed, Completion, Persist
from pathgen.store import beats
from pathgen.store.outage import is_database_outage
from pathgen.store.revisions import NewRevision, insert_revisions

if TYPE_CHECKING:
    from pathgen.runs.budget import Budget

log = logging.getLogger("pathgen.worker")


class PermanentError(PathgenError):
    """A handler failure that no retry will fix: the item is parked at once."""


class StageFailed(PathgenError):
    """A stage call failed; ``persist`` (or ``revisions``, the failed outputs) records the
    failure when the item is parked. ``pause`` is the error that stops the whole stage
    for the run (e.g. HTTP 404 for the configured model): the item waits, unspent.
    ``retry_after_s`` is the least delay before the next attempt (a 429's Retry-After)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        persist: Persist | None = None,
        pause: LLMError | None = None,
        revisions: Sequence[NewRevision] = (),
        retry_after_s: float = 0.0,
    ) -> None:
        self.retryable = retryable
        self.pause = pause
        #: The item is not tried again sooner (a provider's Retry-After).
        self.retry_after_s = retry_after_s
        if persist is None and revisions:
            persist = _inserter(list(revisions))
        self.persist = persist
        super().__init__(message)


def _inserter(revisions: list[NewRevision]) -> Persist:
    async def persist(session: AsyncSession) -> None:
        await insert_revisions(session, revisions)

    return persist


@dataclass
class StageHandler:
    """How a worker runs one stage.

    ``prepare`` (optional) reads what a claimed batch needs in one go; each item's
    ``handle`` then gets its own entry of the mapping it returned (``None`` without one).
    ``read`` (optional) does the same inside the claim's own transaction (no read of
    its own: for a short, indexed read, as the claim holds SQLite's write lock).
    ``prefetch`` items are claimed beyond ``concurrency`` and wait their turn here (under
    lease, their attempt counted by the claim), so a stage whose items are quick is not
    one claim transaction per item; with
    ``commit_wait_s`` their completions share transactions too.
    """

    stage: str
    concurrency: int
    handle: Callable[[Claimed, Any], Awaitable[Completion]]
    prepare: Callable[[Sequence[Claimed]], Awaitable[Mapping[int, Any]]] | None = None
    read: queue.ClaimRead | None = None
    prefetch: int = 0
    #: How long a finished item may wait for others to join its completion transaction.
    commit_wait_s: float = 0.0

    @property
    def capacity(self) -> int:
        """Items this stage holds at most: running plus waiting their turn."""
        return self.concurrency + self.prefetch if self.concurrency > 0 else 0


@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    released: int = 0
    paused: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)

    def add(self, other: WorkerStats) -> None:
        """Count ``other``'s items too (another process of the same run)."""
        for name in ("done", "failed", "retried", "lost", "released", "paused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for stage, n in other.by_stage.items():
            self.by_stage[stage] = self.by_stage.get(stage, 0) + n


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

    A batch is committed when it is full, at the first tick (every ``interval``) after
    the completions' ``wait_s`` has passed, or when the worker calls :meth:`kick`
    (nothing else can join the batch).
    """

    def __init__(
        self, engine: AsyncEngine, batch: int = 128, interval: float = 0.05, parallel: int = 2
    ) -> None:
        self._engine = engine
        self._batch = batch
        self._interval = interval
        self._pending: list[tuple[Completion, asyncio.Future[bool]]] = []
        #: Loop time when the first of the waiting completions wants its commit.
        self._due = float("inf")
        self._kick = asyncio.Event()
        #: Batches committed at the same time (a database round trip waits for the event
        #: loop: a second transaction in flight keeps commits from queueing behind it).
        self._slots = asyncio.Semaphore(parallel)

    async def add(self, completion: Completion, wait_s: float = 0.0) -> bool:
        """Commit ``completion`` with others; it waits up to ``wait_s`` (and the next
        tick) for more to join its transaction. True when committed, False when the
        lease was lost."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._pending.append((completion, fut))
        self._due = min(self._due, loop.time() + wait_s)
        if len(self._pending) >= self._batch:
            self.kick()
        return await fut

    @property
    def waiting(self) -> int:
        """Completions waiting to be committed."""
        return len(self._pending)

    def kick(self) -> None:
        """Commit what is waiting now."""
        self._due = float("-inf")
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        commits: set[asyncio.Task[None]] = set()
        while True:
            if stop.is_set() and not self._pending:
                if not commits:
                    return
                await asyncio.gather(*commits)  # a failed batch may put items back
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._interval)
            self._kick.clear()
            if loop.time() < self._due and not stop.is_set():
                continue
            self._due = float("inf")
            while self._pending:
                await self._slots.acquire()
                batch, self._pending = self._pending[: self._batch], self._pending[self._batch :]
                task = asyncio.create_task(self._commit(batch), name="commit")
                commits.add(task)
                task.add_done_callback(commits.discard)

    async def _commit(self, batch: list[tuple[Completion, asyncio.Future[bool]]]) -> None:
        try:
            try:
                won = await queue.complete(self._engine, [c for c, _ in batch])
            except Exception as exc:  # noqa: BLE001 - hand the error to every waiter
                if len(batch) > 1:  # isolate the item whose results cannot be written
                    self._pending[:0] = [(c, f) for c, f in batch[1:]]
                    batch = batch[:1]
                    self.kick()
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
            for (_, fut), ok in zip(batch, won, strict=True):
                if not fut.done():
                    fut.set_result(ok)
        finally:
            self._slots.release()


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
        calls: Callable[[], Mapping[tuple[str, str], int]] | None = None,
        beat_s: float = 1.0,
    ) -> None:
        self.engine = engine
        #: Provider calls in flight per ``(run, stage)`` now, written to the database
        #: every ``beat_s`` for ``pathgen status`` (:mod:`pathgen.store.beats`).
        self.calls = calls
        self.beat_s = beat_s
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
        #: Items per stage claimed and not yet handled: running or waiting their turn (an
        #: item being committed no longer counts).
        self._busy: dict[str, int] = dict.fromkeys(self.handlers, 0)
        #: Handler calls per stage at a time (``concurrency``; prefetched items wait).
        self._turns = {
            h.stage: asyncio.Semaphore(max(1, h.concurrency)) for h in self.handlers.values()
        }
        #: A stage whose last claim found less than it asked for is not asked again
        #: before this time, unless a completion here queued work for it.
        self._idle_until: dict[str, float] = dict.fromkeys(self.handlers, 0.0)
        #: ``(run, stage)`` paused here after a stage-pausing error, with its message.
        self._paused: dict[tuple[str, str], str] = {}
        self._wake = asyncio.Event()

    def _paused_runs(self, stage: str) -> list[str]:
        return [run for run, st in self._paused if st == stage]

    def _free(self, stage: str) -> int:
        return self.handlers[stage].capacity - self._busy[stage]

    def _wants_claim(self, stage: str, now: float) -> int:
        """How many items to claim for ``stage`` now (0: not now).

        A claim is a transaction: a busy stage refills in steps of 1/16 of its limit
        (of its prefetch, if larger) rather than one item per returned call.
        """
        free = self._free(stage)
        if free <= 0 or now < self._idle_until[stage]:
            return 0
        if self.run_id is not None and (self.run_id, stage) in self._paused:
            return 0
        handler = self.handlers[stage]
        step = max(1, handler.capacity // 16, handler.prefetch)
        return free if free >= step or self._busy[stage] == 0 else 0

    async def run(self) -> WorkerStats:
        buffer = _CompletionBuffer(self.engine)
        buffer_stop = asyncio.Event()
        side = [
            asyncio.create_task(buffer.run(buffer_stop), name="completions"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        if self.calls is not None:
            side.append(asyncio.create_task(self._beats(self.calls), name="beats"))
        try:
            await self._claim_loop(buffer)
            await self._drain()
        finally:
            buffer_stop.set()
            buffer.kick()  # it ends now, not at its next tick
            await side[0]
            for task in side[1:]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.calls is not None:
                with contextlib.suppress(Exception):  # stale rows stop counting anyway
                    await beats.clear(self.engine, self.owner)
        return self.stats

    async def _beats(self, calls: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Write this worker's provider calls in flight about every ``beat_s`` seconds."""
        seen: set[tuple[str, str]] = set()

        def count() -> dict[tuple[str, str], int]:
            return dict.fromkeys(seen, 0) | dict(calls())  # a stage that went quiet: 0

        while True:
            try:
                seen.update(await beats.publish(self.engine, self.owner, count))
            except Exception as exc:  # noqa: BLE001 - a missed beat is written next time
                log.debug("worker beat failed: %s", exc)
            await asyncio.sleep(self.beat_s)

    def _start(self, stage: str, items: Sequence[Claimed], buffer: _CompletionBuffer) -> None:
        prepare = self.handlers[stage].prepare
        prepared = asyncio.create_task(prepare(items), name=f"{stage}:prepare") if prepare else None
        for item in items:
            task = asyncio.create_task(
                self._process(item, buffer, prepared), name=f"{stage}:{item.key}"
            )
            self._inflight[task] = item
            self._busy[stage] += 1

    async def _claim_loop(self, buffer: _CompletionBuffer) -> None:
        # Downstream stages first, so work flows through the pipeline and memory stays flat.
        stages = list(self.handlers)[::-1]
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            # Every item in flight waits for its commit: nothing can join the batch. Commit
            # it once the next items are claimed, so it overlaps their work, not the claim.
            all_waiting = 0 < len(self._inflight) <= buffer.waiting
            claimed = 0
            for stage in stages:
                want = self._wants_claim(stage, loop.time())
                if want and self.budget is not None:
                    want = await self.budget.allow(stage, want)
                if not want:
                    continue
                items = await queue.claim(
                    self.engine,
                    owner=self.owner,
                    stages=[stage],
                    limit=want,
                    run_id=self.run_id,
                    lease_s=self.lease_s,
                    exclude_runs=self._paused_runs(stage),
                    read=self.handlers[stage].read,
                )
                if len(items) < want:
                    self._idle_until[stage] = loop.time() + self.poll_s
                if items:
                    self._start(stage, items, buffer)
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
        for (run_id, stage), message in self._paused.items():  # work queued since waits too
            await queue.pause_stage(self.engine, run_id, stage, message)
        counts = await queue.counts(self.engine, self.run_id)
        held = self.budget.held if self.budget is not None else set()
        return all(
            n == 0
            for stage, by in counts.items()
            if stage in self.handlers  # work of other stages is other workers' business
            for st, n in by.items()
            if st == "leased" or (st == "queued" and stage not in held)  # held: budget spent
        )

    async def _process(
        self,
        item: Claimed,
        buffer: _CompletionBuffer,
        prepared: asyncio.Task[Mapping[int, Any]] | None,
    ) -> None:
        task = asyncio.current_task()
        handler = self.handlers[item.stage]
        turn = self._turns[item.stage]
        running = True
        try:
            async with turn:  # a prefetched item waits for a running one to return
                if self.stop.is_set():  # stopping: not started, so given back unspent
                    self.stats.released += await queue.release(self.engine, [item])
                    return
                inputs = item.inputs
                if prepared is not None:
                    try:
                        inputs = (await prepared).get(item.id)
                    except Exception as exc:  # noqa: BLE001 - the handler reads for itself
                        log.warning("batch read for %s failed: %s", item.stage, exc)
                completion = await handler.handle(item, inputs)
            running = False
            self._busy[item.stage] -= 1
            self._wake.set()  # the next item can start while this one commits
            if await buffer.add(completion, handler.commit_wait_s):
                self.stats.done += 1
                self.stats.by_stage[item.stage] = self.stats.by_stage.get(item.stage, 0) + 1
                for work in completion.follow_up:  # new work here: claim it now
                    if work.stage in self._idle_until:
                        self._idle_until[work.stage] = 0.0
            else:
                self.stats.lost += 1
                log.warning("lease lost before completion: %s %s", item.stage, item.key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the item
            await self._record_failure(item, exc)
        finally:
            if running:
                self._busy[item.stage] -= 1
            self._inflight.pop(task, None)  # type: ignore[arg-type]
            self._wake.set()

    async def _pause(self, item: Claimed, cause: LLMError) -> None:
        """Stop ``item``'s stage for its run: the item and the stage's queued items wait
        (status ``paused``, attempts unspent) until ``pathgen retry``."""
        key = (item.run_id, item.stage)
        message = f"stage paused: {cause}"
        first = key not in self._paused
        self._paused[key] = message
        await queue.pause_stage(self.engine, item.run_id, item.stage, message, held=item)
        self.stats.paused += 1
        if first:
            log.error(
                "%s paused for run %s: %s. Fix the configuration, then "
                "`pathgen retry %s --stage %s` and run again",
                item.stage,
                item.run_id,
                cause,
                item.run_id,
                item.stage,
            )

    async def _record_failure(self, item: Claimed, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        pause = getattr(exc, "pause", None)
        if pause is not None:
            await self._pause(item, pause)
            return
        if is_database_outage(exc):  # not the item's fault: it keeps its attempt
            self.stats.released += await queue.release(self.engine, [item])
            log.warning("database unavailable during %s %s: released", item.stage, item.key)
            return
        status = await queue.fail(
            self.engine,
            item,
            message,
            retry=_retryable(exc),
            delay_s=max(queue.backoff_s(item.attempts), getattr(exc, "retry_after_s", 0.0)),
            persist_if_parked=getattr(exc, "persist", None),
        )
        if status == "failed":
            self.stats.failed += 1
            log.error(
                "parked %s %s after item attempt %d of %d: %s",
                item.stage,
                item.key,
                item.attempts,
                item.max_attempts,
                message,
            )
        elif status == "queued":
            self.stats.retried += 1
            log.warning("retrying %s %s: %s", item.stage, item.key, message)

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
