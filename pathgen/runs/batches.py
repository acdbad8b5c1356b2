"""Batch mode: a caption stage's calls through the provider's Batch API (half price).

A stage with ``mode = "batch"`` is not claimed by online workers; the run's
:class:`BatchDriver` takes its queued items instead, in batches within the provider's
limits, when enough have waited (``batch_wait_s``) or the earlier stages are done.
Every batch is recorded (table ``llm_batches``) before anything is sent, and each step
is committed before the next starts:

1. ``prepared``: the row, then the items claimed under one long lease
   (``batch:<id>:<nonce>``); a restart finds them by that lease;
2. ``uploaded``: the input file (the requests the stage's handler would send, built as in
   :mod:`.batch_files`) is uploaded; its id recorded;
3. ``submitted``: the batch is created with ``metadata.pathgen_batch = <id>``, so a
   restart that finds an ``uploaded`` row looks for that batch before creating one, and
   an item is never submitted twice; its id recorded;
4. ``done``: once the provider says the batch is final (completed, expired, cancelled or
   failed) its output and error files are imported as revisions (same provenance as online
   calls, plus ``params.batch_id``: the provider's id), failed lines go back to the
   queue (the next batch takes them), lines that never ran (expired, cancelled) are
   released to the queue, and the provider's status is recorded.

A killed run, started again, polls the batches it already submitted.

Example::

    driver = BatchDriver(engine, settings, resources, "breast-1", ["describe"])
    await driver.run(done)     # until ``done`` is set
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import ConfigError, LLMError
from pathgen.runs import queue
from pathgen.runs.batch_files import build_lines, import_lines, release_missing
from pathgen.runs.budget import Budget
from pathgen.runs.queue import Claimed
from pathgen.runs.resources import RunResources
from pathgen.settings import Settings, StageSettings
from pathgen.store.engine import read_scope, session_scope
from pathgen.store.models import LLMBatch, WorkItem, utcnow
from pathgen.types import PIPELINE_STAGES

if TYPE_CHECKING:  # the SDKs load only when a batch stage runs (``pathgen tile`` needs none)
    from pathgen.llm.batch_mistral import MistralBatches
    from pathgen.llm.batch_openai import OpenAIBatches

log = logging.getLogger("pathgen.batches")

#: How long a batch's items stay reserved: the 24 h completion window and a margin.
LEASE_S = 26 * 3600.0
METADATA_KEY = "pathgen_batch"


def batch_stages(settings: Settings) -> list[str]:
    """The caption stages whose calls go through a Batch API."""
    cap = settings.captioning
    return [
        s
        for s in ("describe", "fuse", "degrade", "revise", "summarize")
        if getattr(cap, s).mode == "batch"
    ]


def batch_api(cfg: StageSettings) -> OpenAIBatches | MistralBatches:
    """The Batch API client of a stage's provider."""
    from pathgen.llm.batch_mistral import MistralBatches
    from pathgen.llm.batch_openai import OpenAIBatches

    if cfg.provider == "mistral":
        return MistralBatches(model=cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env)
    if cfg.provider != "openai":
        raise ConfigError(
            f"batch mode needs provider openai or mistral, not {cfg.provider!r}", key="mode"
        )
    return OpenAIBatches(base_url=cfg.base_url, api_key_env=cfg.api_key_env)


class BatchDriver:
    """Sends, polls and imports the batches of a run's batch-mode stages."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        resources: RunResources,
        run_id: str,
        stages: Sequence[str],
        budget: Budget | None = None,
    ) -> None:
        self.engine = engine
        #: The run's spending limit: a batch takes only the items it leaves room for.
        self.budget = budget
        self.settings = settings
        self.resources = resources
        self.run_id = run_id
        self.stages = list(stages)
        self._apis: dict[str, OpenAIBatches | MistralBatches] = {}

    def _cfg(self, stage: str) -> StageSettings:
        cfg: StageSettings = getattr(self.settings.captioning, stage)
        return cfg

    def _api(self, stage: str) -> OpenAIBatches | MistralBatches:
        if stage not in self._apis:
            self._apis[stage] = batch_api(self._cfg(stage))
        return self._apis[stage]

    async def run(self, done: asyncio.Event) -> None:
        """Step until ``done`` is set (the run's worker finished)."""
        poll = min(self._cfg(s).batch_poll_s for s in self.stages)
        try:
            while not done.is_set():
                try:
                    await self.step()
                except LLMError as exc:  # the provider is unreachable now: try next poll
                    log.warning("batch API: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), poll)
        finally:
            for api in self._apis.values():
                await api.aclose()

    async def step(self) -> None:
        """Move every batch one step on, and send the items that are due."""
        for stage in self.stages:
            for row in await self._rows(stage, ("prepared", "uploaded")):
                await self._send(row)
            for row in await self._rows(stage, ("submitted",)):
                await self._poll(row)
            queued = await self._due(stage)
            if queued:
                await self._new_batch(stage, queued)

    async def _rows(self, stage: str, states: tuple[str, ...]) -> list[LLMBatch]:
        async with read_scope(self.engine) as session:
            rows = await session.scalars(
                select(LLMBatch)
                .where(
                    LLMBatch.run_id == self.run_id,
                    LLMBatch.stage == stage,
                    LLMBatch.state.in_(states),
                )
                .order_by(LLMBatch.created_at)
            )
            return list(rows)

    async def _update(self, batch_id: str, **values: Any) -> None:
        async with session_scope(self.engine) as session:
            row = await session.get(LLMBatch, batch_id)
            assert row is not None
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()

    async def _due(self, stage: str) -> int:
        """How many queued items of ``stage`` to send now (0: wait for more)."""
        from pathgen.llm.batch_openai import MAX_REQUESTS

        counts = await queue.counts(self.engine, self.run_id)
        queued = counts.get(stage, {}).get("queued", 0)
        if not queued:
            return 0
        upstream = PIPELINE_STAGES[: PIPELINE_STAGES.index(stage)]
        if not any(counts.get(s, {}).get(k, 0) for s in upstream for k in ("queued", "leased")):
            return queued
        if queued >= MAX_REQUESTS:
            return queued
        async with read_scope(self.engine) as session:
            oldest = await session.scalar(
                select(func.min(WorkItem.updated_at)).where(
                    WorkItem.run_id == self.run_id,
                    WorkItem.stage == stage,
                    WorkItem.status == "queued",
                )
            )
        waited = (utcnow() - oldest).total_seconds() if oldest else 0.0
        return queued if waited >= self._cfg(stage).batch_wait_s else 0

    async def _new_batch(self, stage: str, queued: int) -> None:
        from pathgen.llm.batch_openai import MAX_REQUESTS

        limit = min(queued, MAX_REQUESTS)
        if self.budget is not None:
            limit = await self.budget.allow(stage, limit)
            if limit <= 0:
                return
        batch_id = f"b-{secrets.token_hex(6)}"
        owner = f"batch:{batch_id}"
        async with session_scope(self.engine) as session:  # recorded before anything else
            session.add(
                LLMBatch(
                    id=batch_id,
                    run_id=self.run_id,
                    stage=stage,
                    provider=self._cfg(stage).provider,
                    state="prepared",
                    lease=owner,
                    items=[],
                )
            )
        items = await queue.claim(
            self.engine,
            owner=owner,
            stages=[stage],
            limit=limit,
            run_id=self.run_id,
            lease_s=LEASE_S,
        )
        lease = items[0].owner if items else owner
        await self._update(batch_id, lease=lease, items=[i.id for i in items])
        async with read_scope(self.engine) as session:
            row = await session.get(LLMBatch, batch_id)
        assert row is not None
        await self._send(row)

    async def _held(self, row: LLMBatch) -> list[Claimed]:
        """The batch's items still held under its lease (found by the lease's prefix)."""
        async with read_scope(self.engine) as session:
            rows = await session.scalars(
                select(WorkItem)
                .where(
                    WorkItem.status == "leased",
                    WorkItem.lease_owner.startswith(f"batch:{row.id}:"),
                )
                .order_by(WorkItem.id)
            )
            return [
                Claimed(
                    w.id,
                    w.run_id,
                    w.stage,
                    w.key,
                    w.payload or {},
                    w.attempts,
                    w.max_attempts,
                    w.lease_owner or "",
                )
                for w in rows
            ]

    async def _send(self, row: LLMBatch) -> None:
        """Upload (``prepared``) and create (``uploaded``) the batch, recording each step."""
        from pathgen.llm.batch_openai import MAX_BYTES

        api = self._api(row.stage)
        if row.state == "prepared":
            items = await self._held(row)
            base = await self.resources.for_run(self.run_id)
            lines, _ = await build_lines(self.engine, base, items, api.line)
            content = b""
            kept = []
            for line in lines:
                data = (json.dumps(line) + "\n").encode()
                if len(content) + len(data) > MAX_BYTES:
                    break
                content += data
                kept.append(int(line["custom_id"].split("|", 1)[0]))
            extra = [i for i in items if i.id not in set(kept)]
            if extra:  # past the size limit (or reused): back to the queue, or done
                await queue.release(self.engine, extra)
            if not kept:
                await self._update(row.id, state="done", provider_status="empty", items=[])
                return
            file_id = await api.upload(content, f"{self.run_id}-{row.stage}-{row.id}.jsonl")
            await self._update(row.id, state="uploaded", input_file_id=file_id, items=kept)
            row.state, row.input_file_id = "uploaded", file_id
        if row.state == "uploaded":
            found = await api.find(METADATA_KEY, row.id)
            state = found or await api.create(row.input_file_id or "", {METADATA_KEY: row.id})
            await self._update(
                row.id, state="submitted", provider_batch_id=state.id, provider_status=state.status
            )
            log.info("batch %s (%s) submitted: %d item(s)", row.id, state.id, len(row.items))

    async def _poll(self, row: LLMBatch) -> None:
        api = self._api(row.stage)
        state = await api.retrieve(row.provider_batch_id or "")
        if not state.final:
            if state.status != row.provider_status:
                await self._update(row.id, provider_status=state.status)
            return
        lines: list[dict[str, Any]] = []
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                text = (await api.content(file_id)).decode("utf-8")
                lines += [json.loads(x) for x in text.splitlines() if x.strip()]
        base = await self.resources.for_run(self.run_id)
        report, _, seen = await import_lines(
            self.engine, self.settings, base, self.run_id, lines, batch_id=state.id
        )
        held = {i.owner for i in await self._held(row)}
        released = await release_missing(self.engine, self.run_id, held, seen)
        result = {
            "done": report.done,
            "failed": report.failed,
            "skipped": report.skipped,
            "released": released,
        }
        await self._update(row.id, state="done", provider_status=state.status, result=result)
        log.info("batch %s (%s) %s: %s", row.id, state.id, state.status, result)
