"""A spending limit that holds across workers: ``run.max_cost_usd`` and a stage's
``max_cost_usd``.

Before a worker claims items of a paid stage it asks :meth:`Budget.allow` how many it
may take: the spent cost (the ``cost`` of the run's stored revisions, read from the
database, so every worker on the same database sees the same figure) plus the worst case
of every call in flight (leased items of paid stages, in any worker, times the most one
item can cost) plus the new items' worst case must stay within the limit. The most an
item can cost is its calls' input (the largest stored input of the stage plus 20%, or the
rendered prompt before any is stored) and ``max_tokens`` of output at the stage's
prices; summarize counts twice (its strict retry).

The figures are read before every claim of a paid stage (``refresh_s`` > 0 reads them at
most that often and counts the worker's own claims in between: fewer queries, a wider
margin). Workers that read at the same moment may each claim on the same room, so the
spend can pass the limit by at most the other workers' claims of that moment (their
free slots of one stage, at the worst case each). A stage the budget stops is *held*:
its items stay queued, the worker finishes when nothing else is left, and the run ends
with exit code 5
(:attr:`~pathgen.exitcodes.ExitCode.BUDGET`). Raising the limit (an operational setting)
and running again resumes.

Example::

    budget = Budget(engine, "breast-1", settings)
    n = await budget.allow("describe", 8)     # claim at most n items
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs import queue
from pathgen.runs.callshape import call_shapes, stage_calls
from pathgen.settings import Settings
from pathgen.store.engine import read_scope
from pathgen.store.models import CaptionRevision, InstructItem

#: Headroom on the largest stored input of a stage (reports and descriptions vary).
INPUT_HEADROOM = 1.2
#: Report length assumed for a call's worst case before any call of the stage is stored.
REPORT_CHARS = 4000


@dataclass(frozen=True)
class Spend:
    """What the database says: cost and largest input per stage, leased items per stage."""

    cost: dict[str, float] = field(default_factory=dict)
    max_input: dict[str, int] = field(default_factory=dict)
    leased: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.cost.values())


def has_budget(settings: Settings) -> bool:
    """Whether the settings set any spending limit."""
    return settings.run.max_cost_usd is not None or any(
        c.max_cost_usd is not None for calls in stage_calls(settings).values() for c in calls
    )


class Budget:
    """The spending limits of one run, checked before each claim (see the module doc)."""

    def __init__(
        self, engine: AsyncEngine, run_id: str, settings: Settings, *, refresh_s: float = 0.0
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.limit = settings.run.max_cost_usd
        self.calls = stage_calls(settings)
        self.stage_limit = {
            stage: calls[0].max_cost_usd
            for stage, calls in self.calls.items()
            if calls[0].max_cost_usd is not None
        }
        self._shapes = call_shapes(settings, report_chars=REPORT_CHARS, output_tokens={})
        self.refresh_s = refresh_s
        #: Stages whose claims the budget stopped (their items wait in the queue).
        self.held: set[str] = set()
        self._spend = Spend()
        self._read_at = -math.inf
        self._claimed: dict[str, float] = {}  # worst cost claimed here since the last read

    async def read(self) -> Spend:
        """The run's spend and in-flight items, from the database."""
        async with read_scope(self.engine) as session:
            rows = await session.execute(
                select(
                    CaptionRevision.stage,
                    func.sum(CaptionRevision.cost),
                    func.max(CaptionRevision.input_tokens),
                )
                .where(CaptionRevision.run_id == self.run_id)
                .group_by(CaptionRevision.stage)
            )
            cost, max_input = {}, {}
            for stage, total, largest in rows:
                cost[stage], max_input[stage] = float(total or 0), int(largest or 0)
            # Instruct items share their calls' tokens: their cost counts, their inputs don't
            # tell a call's size (the call shape does).
            made = await session.scalar(
                select(func.sum(InstructItem.cost)).where(InstructItem.run_id == self.run_id)
            )
            if made:
                cost["instruct"] = float(made)
        counts = await queue.counts(self.engine, self.run_id)
        leased = {stage: by.get("leased", 0) for stage, by in counts.items()}
        return Spend(cost, max_input, leased)

    def worst_item(self, stage: str, spend: Spend) -> float:
        """The most one item of ``stage`` can cost."""
        total = 0.0
        for shape in self._shapes.get(stage, []):
            seen = spend.max_input.get(stage)
            tokens = math.ceil(seen * INPUT_HEADROOM) if seen else shape.input_tokens
            total += shape.cost(input_tokens=tokens, output_tokens=shape.settings.max_tokens)
        return total * (2 if stage == "summarize" else 1)

    def in_flight(self, spend: Spend, stage: str | None = None) -> float:
        """Worst-case cost of the leased items (of ``stage``, or of every paid stage)."""
        stages = [stage] if stage else list(self.calls)
        return sum(spend.leased.get(s, 0) * self.worst_item(s, spend) for s in stages)

    async def _refresh(self) -> None:
        self._spend = await self.read()
        self._read_at = time.monotonic()
        self._claimed.clear()

    async def allow(self, stage: str, want: int) -> int:
        """How many of ``want`` items of ``stage`` may be claimed now (0..want).

        A stage is held only on fresh figures (its own claims since the last read may not
        all have found items)."""
        if stage not in self.calls or want <= 0:
            return want
        stale = time.monotonic() - self._read_at >= self.refresh_s
        if stale:
            await self._refresh()
        n = self._room(stage, want)
        if n < want and not stale:
            await self._refresh()
            n = self._room(stage, want)
        self._claimed[stage] = self._claimed.get(stage, 0.0) + n * self.worst_item(
            stage, self._spend
        )
        if n < want:
            self.held.add(stage)
        else:
            self.held.discard(stage)
        return n

    def _room(self, stage: str, want: int) -> int:
        spend = self._spend
        worst = self.worst_item(stage, spend)
        if worst <= 0:
            return want
        n = want
        if self.limit is not None:
            left = self.limit - spend.total - self.in_flight(spend) - sum(self._claimed.values())
            n = min(n, math.floor(left / worst))
        if stage in self.stage_limit:
            left = (
                self.stage_limit[stage]
                - spend.cost.get(stage, 0.0)
                - self.in_flight(spend, stage)
                - self._claimed.get(stage, 0.0)
            )
            n = min(n, math.floor(left / worst))
        return max(0, n)

    async def reached(self) -> str | None:
        """Why the budget stopped claims, with the figures (None when it did not)."""
        if not self.held:
            return None
        spend = await self.read()
        parts = []
        if self.limit is not None:
            parts.append(f"spent ${spend.total:.4f} of run.max_cost_usd ${self.limit:g}")
        for stage in sorted(self.held & set(self.stage_limit)):
            parts.append(
                f"{stage} spent ${spend.cost.get(stage, 0.0):.4f} of its "
                f"max_cost_usd ${self.stage_limit[stage]:g}"
            )
        worst = ", ".join(f"{s} ${self.worst_item(s, spend):.4f}" for s in sorted(self.held))
        parts.append(f"an item can cost up to {worst}")
        return "budget reached: " + "; ".join(parts)
