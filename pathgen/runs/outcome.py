"""How a run or worker ended, read from the queue: the exit code, status and summary.

The outcome counts the items of the stages a process ran, in the database, so it is
true whoever processed them (this process, other workers, an earlier start):

* every item done → :attr:`ExitCode.OK`;
* nothing left to do but some items parked as failed → :attr:`ExitCode.PARKED`;
* items still queued or leased that no worker took, or a stage paused after a
  provider error no retry fixes (bad key, unknown model or URL) → :attr:`ExitCode.STALLED`;
* items left queued because the spending limit was reached → :attr:`ExitCode.BUDGET`
  (see :mod:`pathgen.runs.budget`);
* stopped by a signal with work left → :attr:`ExitCode.INTERRUPTED`.

Example::

    out = await run_outcome(engine, "breast-1", ["describe", "revise"], interrupted=False)
    out.code, out.lines()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.exitcodes import ExitCode
from pathgen.runs import queue
from pathgen.store.engine import read_scope
from pathgen.store.models import WorkItem
from pathgen.store.outage import rides_out_outages

#: Distinct errors shown per stage, and the length each is cut to.
ERRORS_SHOWN = 3
ERROR_CHARS = 300


@dataclass(frozen=True)
class StageOutcome:
    """One stage's items at the end, with why some are not done."""

    stage: str
    done: int
    parked: int
    unfinished: int
    #: The first distinct errors of parked items, with how many items carry each.
    errors: tuple[tuple[str, int], ...] = ()
    #: The last error of an unfinished item, when it has one (why it waits).
    waiting: str | None = None
    #: Items of a stage paused for the run (they wait for ``pathgen retry``), and why.
    paused: int = 0
    paused_why: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The exit code and the run status a process ends with."""

    run_id: str
    code: ExitCode
    #: The run's status to store: completed, parked, stalled, interrupted or paused.
    status: str
    stages: tuple[StageOutcome, ...] = field(default_factory=tuple)
    #: Why the budget stopped claims, with the figures (None when it did not).
    budget: str | None = None

    @property
    def finished(self) -> bool:
        """Nothing left queued or in flight in these stages (items are done or parked)."""
        return not any(s.unfinished or s.paused for s in self.stages)

    def lines(self, *, unfinished: bool = True) -> list[str]:
        """Per stage with problems: what is parked (with the first distinct errors) and,
        with ``unfinished``, what is stuck."""
        out: list[str] = []
        for s in self.stages:
            if s.paused:
                out.append(
                    f"{s.stage}: {s.paused} item(s) wait: {s.paused_why or 'stage paused'}; "
                    f"fix it, then `pathgen retry {self.run_id} --stage {s.stage}` and rerun"
                )
            if s.parked:
                out.append(f"{s.stage}: {s.parked} parked ({s.done} done)")
                out += [f"  {n} x {err}" for err, n in s.errors]
            if unfinished and s.unfinished and self.code == ExitCode.STALLED:
                why = f": {s.waiting}" if s.waiting else ""
                out.append(f"{s.stage}: {s.unfinished} not done, and no worker can take them{why}")
        return out

    def last_line(self) -> str:
        """One line a log reader can act on."""
        parked = sum(s.parked for s in self.stages)
        left = sum(s.unfinished + s.paused for s in self.stages)
        if self.code == ExitCode.OK and self.status == "paused":
            ran = ", ".join(s.stage for s in self.stages)
            return (
                f"run {self.run_id}: every item of {ran} done; other stages have work left "
                "(run them, or start workers)"
            )
        if self.code == ExitCode.OK:
            return f"run {self.run_id} {self.status}: every item done"
        if self.code == ExitCode.PARKED:
            return (
                f"run {self.run_id} finished with {parked} parked item(s) (exit {self.code:d}): "
                f"fix the cause, then `pathgen retry {self.run_id}` and rerun"
            )
        if self.code == ExitCode.STALLED:
            return (
                f"run {self.run_id} stopped with {left} item(s) no worker can take "
                f"(exit {self.code:d}): see the reasons above"
            )
        if self.code == ExitCode.BUDGET:
            return (
                f"run {self.run_id} stopped with {left} item(s) left, {self.budget} "
                f"(exit {self.code:d}): raise run.max_cost_usd (or the stage's max_cost_usd) "
                "and run again to resume"
            )
        return (
            f"run {self.run_id} interrupted with {left} item(s) left (exit {self.code:d}): "
            "run the same command to resume"
        )


def _code(stages: Sequence[StageOutcome], interrupted: bool, budget: str | None) -> ExitCode:
    if any(s.unfinished for s in stages):
        if interrupted:
            return ExitCode.INTERRUPTED
        return ExitCode.BUDGET if budget else ExitCode.STALLED
    if any(s.paused for s in stages):
        return ExitCode.STALLED
    if any(s.parked for s in stages):
        return ExitCode.PARKED
    return ExitCode.OK


def _status(code: ExitCode, counts: dict[str, dict[str, int]]) -> str:
    pending = sum(by.get("queued", 0) + by.get("leased", 0) for by in counts.values())
    if code == ExitCode.INTERRUPTED:
        return "interrupted"
    if code == ExitCode.STALLED:
        return "stalled"
    if code == ExitCode.BUDGET:
        return "budget"
    if pending:
        return "paused"  # other stages still have work: this process did not run them
    return "parked" if any(by.get("failed") for by in counts.values()) else "completed"


async def _errors(engine: AsyncEngine, run_id: str, stage: str) -> tuple[tuple[str, int], ...]:
    async with read_scope(engine) as session:
        rows = await session.execute(
            select(WorkItem.last_error, func.count())
            .where(WorkItem.run_id == run_id, WorkItem.stage == stage, WorkItem.status == "failed")
            .group_by(WorkItem.last_error)
            .order_by(func.min(WorkItem.id))
            .limit(ERRORS_SHOWN)
        )
        return tuple(((err or "no error recorded")[:ERROR_CHARS], n) for err, n in rows)


async def _waiting(
    engine: AsyncEngine, run_id: str, stage: str, statuses: tuple[str, ...] = ("queued", "leased")
) -> str | None:
    async with read_scope(engine) as session:
        err = await session.scalar(
            select(WorkItem.last_error)
            .where(
                WorkItem.run_id == run_id,
                WorkItem.stage == stage,
                WorkItem.status.in_(statuses),
                WorkItem.last_error.is_not(None),
            )
            .order_by(WorkItem.updated_at.desc())
            .limit(1)
        )
    return err[:ERROR_CHARS] if err else None


@rides_out_outages("outcome")
async def run_outcome(
    engine: AsyncEngine,
    run_id: str,
    stages: Sequence[str],
    *,
    interrupted: bool,
    budget: str | None = None,
) -> Outcome:
    """The outcome of ``run_id`` over ``stages`` (the ones this process worked on);
    ``budget`` says why the spending limit stopped claims, when it did."""
    counts = await queue.counts(engine, run_id)
    found: list[StageOutcome] = []
    for stage in stages:
        by = counts.get(stage, {})
        parked = by.get("failed", 0)
        unfinished = by.get("queued", 0) + by.get("leased", 0)
        paused = by.get("paused", 0)
        found.append(
            StageOutcome(
                stage,
                done=by.get("done", 0),
                parked=parked,
                unfinished=unfinished,
                errors=await _errors(engine, run_id, stage) if parked else (),
                waiting=await _waiting(engine, run_id, stage) if unfinished else None,
                paused=paused,
                paused_why=await _waiting(engine, run_id, stage, ("paused",)) if paused else None,
            )
        )
    code = _code(found, interrupted, budget)
    return Outcome(
        run_id,
        code,
        _status(code, counts),
        tuple(found),
        budget if code == ExitCode.BUDGET else None,
    )


def effective_status(
    stored: str,
    counts: dict[str, dict[str, int]],
    *,
    owner_alive: bool | None = None,
    live_holders: int = 0,
    dead_holders: int = 0,
) -> str:
    """The status to show for a run, from its queue rather than the last process's word.

    Nothing left to do → ``completed`` (or ``parked``), whoever finished it; leases held
    by live processes → ``running``; a run marked running whose driving process, or every
    lease holder, is a dead local process → ``interrupted``.
    """
    pending = sum(
        by.get("queued", 0) + by.get("leased", 0) + by.get("paused", 0) for by in counts.values()
    )
    if counts and not pending:
        return "parked" if any(by.get("failed") for by in counts.values()) else "completed"
    if live_holders:
        return "running"
    if stored != "running" or owner_alive is True:
        return stored
    return "interrupted" if owner_alive is False or dead_holders else stored
