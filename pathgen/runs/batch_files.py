"""Batch mode for self-hosted engines: export a stage's queued items as an OpenAI batch
input file, import the engine's output file as revisions.

``export_stage`` claims the queued items of one caption stage under one long lease (the
*export*, id ``b-…``), so no online worker takes them meanwhile, and writes one line per
item in the OpenAI batch format (``custom_id``, ``method``, ``url``, ``body`` with image
parts inline as data URLs), e.g. for ``vllm run-batch`` or any offline engine. The
request of each item is the one the stage's handler would send: the handler runs with a
client that records the request instead of sending it.

``import_results`` reads an output file (OpenAI batch output format: ``custom_id`` and
``response.body``, or ``error``) and runs the stage's handler again with a client that
answers from the file, so each result is parsed, priced and stored exactly as an online
call's (same provenance, plus ``params.batch_id``), and the next stage is queued. The
item is completed only while the export still holds its lease, so importing a file twice
never writes a result twice. Failed lines go back to the queue (retried online, or in the
next export); the export's items without a line are released to the queue.

Example::

    export = await export_stage(engine, settings, "breast-1", "describe", Path("in.jsonl"))
    report = await import_results(engine, settings, "breast-1", Path("out.jsonl"))
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import ConfigError, ProviderError
from pathgen.llm.base import ChatRequest, ChatResult
from pathgen.llm.completions import result_from_payload
from pathgen.runs import queue
from pathgen.runs.queue import Claimed, Completion
from pathgen.runs.resources import Resources, RunResources
from pathgen.runs.worker import StageFailed
from pathgen.settings import Settings
from pathgen.store.engine import read_scope
from pathgen.store.models import WorkItem

#: Stages whose items make exactly one provider call (fusion's several describers do not).
BATCH_STAGES = ("describe", "fuse", "degrade", "revise", "summarize")
OWNER_PREFIX = "batch"
DEFAULT_LEASE_S = 24 * 3600.0


class _Captured(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the recording client: the handler's request, caught by the export."""

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        super().__init__("request captured")


class _RecordingClient:
    provider = "batch-export"

    async def complete(self, request: ChatRequest) -> ChatResult:
        raise _Captured(request)

    async def aclose(self) -> None:
        return None


class _ReplayClient:
    """Answers the handler's one call from a batch output line."""

    def __init__(self, provider: str, line: dict[str, Any], batch_id: str) -> None:
        self.provider = provider
        self._line = line
        self._batch_id = batch_id
        self._used = False

    async def complete(self, request: ChatRequest) -> ChatResult:
        if self._used:  # e.g. summarize's strict retry: that needs an online call
            raise ProviderError(f"{self.provider}: a second call is not in the batch")
        self._used = True
        response = self._line.get("response") or {}
        error = self._line.get("error")
        status = int(response.get("status_code") or (0 if error else 200))
        if error or status != 200:
            detail = json.dumps(error or response.get("body"))[:300]
            raise ProviderError(f"{self.provider}: batch line failed (HTTP {status}): {detail}")
        result = result_from_payload(
            response.get("body") or {}, provider=self.provider, model=request.model, latency_s=0.0
        )
        return dataclasses.replace(result, batch_id=self._batch_id)

    async def aclose(self) -> None:
        return None


class _WithClient:
    """The run's resources, but every stage call goes to ``client``."""

    def __init__(self, res: Resources, client: Any) -> None:
        self._res = res
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._res, name)

    async def client(self, stage: str, cfg: Any = None) -> Any:
        return self._client


def _check_stage(settings: Settings, stage: str) -> None:
    if stage not in BATCH_STAGES:
        raise ConfigError(f"batch mode is for the caption stages {BATCH_STAGES}", key="--stage")
    if stage == "describe" and settings.captioning.describers:
        raise ConfigError(
            "batch export of describe needs one describer (fusion makes several calls per "
            "tile): run describe online",
            key="captioning.describers",
        )


@dataclass(frozen=True)
class ExportReport:
    batch_id: str
    written: int
    #: Items completed at once because an output made with the same settings exists.
    reused: int


def _handler(stage: str) -> Any:
    """The caption stage's handler, reading its own inputs (no batch read was prepared)."""
    from pathgen.runs.pipeline import CAPTION_HANDLERS  # the stage graph: imported when used

    return partial(_call_without_inputs, CAPTION_HANDLERS[stage])


async def _call_without_inputs(handler: Any, item: Claimed, res: Resources) -> Completion:
    return await handler(item, res, None)


async def export_stage(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    stage: str,
    out: Path,
    *,
    limit: int | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> ExportReport:
    """Claim up to ``limit`` queued items of ``stage`` and write their requests to ``out``."""
    _check_stage(settings, stage)
    batch_id = f"b-{secrets.token_hex(6)}"
    counts = await queue.counts(engine, run_id)
    want = counts.get(stage, {}).get("queued", 0) if limit is None else limit
    items = await queue.claim(
        engine,
        owner=f"{OWNER_PREFIX}:{batch_id}",
        stages=[stage],
        limit=want,
        run_id=run_id,
        lease_s=lease_s,
    )
    shared = RunResources(settings, engine)
    try:
        lines, reused = await build_lines(engine, await shared.for_run(run_id), items)
    finally:
        await shared.aclose()
    out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return ExportReport(batch_id, len(lines), reused)


async def build_lines(
    engine: AsyncEngine,
    base: Resources,
    items: list[Claimed],
    line: Callable[[str, ChatRequest], dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The batch input lines of ``items`` (held under their lease; ``line`` writes one in
    the provider's format, OpenAI's by default), and how many items were completed at
    once instead (an output made with the same settings exists)."""
    if line is None:  # the SDK loads only when batch files are made
        from pathgen.llm.batch_openai import OpenAIBatches

        line = OpenAIBatches.line
    res = _WithClient(base, _RecordingClient())
    lines: list[dict[str, Any]] = []
    reused = 0
    for item in items:
        try:
            done = await _handler(item.stage)(item, res)
        except _Captured as cap:
            lines.append(line(f"{item.id}|{item.owner}", cap.request))
            continue
        await queue.complete(engine, [done])
        reused += 1
    return lines, reused


@dataclass(frozen=True)
class ImportReport:
    done: int = 0
    failed: int = 0
    #: Lines whose item was already imported, or whose lease was lost (never written twice).
    skipped: int = 0
    #: Exported items without a line in the file, released to the queue.
    released: int = 0


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                raise ConfigError(f"line {n} is not JSON", path=str(path)) from None
            if not isinstance(line, dict) or "|" not in str(line.get("custom_id", "")):
                raise ConfigError(
                    f"line {n}: no custom_id written by `pathgen batch export`", path=str(path)
                )
            yield line


async def _held_item(engine: AsyncEngine, run_id: str, custom_id: str) -> Claimed | None:
    item_id, lease = custom_id.split("|", 1)
    async with read_scope(engine) as session:
        row = await session.get(WorkItem, int(item_id))
    if row is None or row.run_id != run_id or row.status != "leased" or row.lease_owner != lease:
        return None
    return Claimed(
        row.id,
        row.run_id,
        row.stage,
        row.key,
        row.payload or {},
        row.attempts,
        row.max_attempts,
        lease,
    )


async def import_results(
    engine: AsyncEngine, settings: Settings, run_id: str, path: Path
) -> ImportReport:
    """Store the results of a batch output file (see the module doc)."""
    shared = RunResources(settings, engine)
    try:
        report, leases, seen = await import_lines(
            engine, settings, await shared.for_run(run_id), run_id, _lines(path)
        )
    finally:
        await shared.aclose()
    released = await release_missing(engine, run_id, leases, seen)
    return dataclasses.replace(report, released=released)


async def import_lines(
    engine: AsyncEngine,
    settings: Settings,
    base: Resources,
    run_id: str,
    lines: Iterable[dict[str, Any]],
    batch_id: str | None = None,
) -> tuple[ImportReport, set[str], set[int]]:
    """Store the results of batch output ``lines``; also returns the leases the lines
    name and the ids of the items they answered (for :func:`release_missing`)."""
    done = failed = skipped = 0
    leases: set[str] = set()
    seen: set[int] = set()
    for line in lines:
        custom_id = str(line["custom_id"])
        leases.add(custom_id.split("|", 1)[1])
        item = await _held_item(engine, run_id, custom_id)
        if item is None or item.id in seen:
            skipped += 1
            continue
        seen.add(item.id)
        provider = getattr(settings.captioning, item.stage).provider
        replay = _ReplayClient(provider, line, batch_id or item.owner.split(":")[1])
        try:
            completion: Completion = await _handler(item.stage)(item, _WithClient(base, replay))
        except StageFailed as exc:
            await queue.fail(
                engine, item, str(exc), retry=exc.retryable, persist_if_parked=exc.persist
            )
            failed += 1
            continue
        won = await queue.complete(engine, [completion])
        done += 1 if won[0] else 0
        skipped += 0 if won[0] else 1
    return ImportReport(done, failed, skipped), leases, seen


async def release_missing(
    engine: AsyncEngine, run_id: str, leases: set[str], seen: set[int]
) -> int:
    """Give the queue back the items held under ``leases`` that are not in ``seen``."""
    async with read_scope(engine) as session:
        rows = list(
            await session.execute(
                select(WorkItem.id, WorkItem.lease_owner).where(
                    WorkItem.run_id == run_id,
                    WorkItem.status == "leased",
                    WorkItem.lease_owner.in_(list(leases)),
                )
            )
        )
    missing = [Claimed(i, run_id, "", "", {}, 0, 0, owner) for i, owner in rows if i not in seen]
    return await queue.release(engine, missing)
