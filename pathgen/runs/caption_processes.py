"""The helper processes ``pathgen run`` starts for its spread caption stages.

Process 0 is ``pathgen run`` itself; processes 1..n-1 run
``python -m pathgen.workers.caption_process``, each a worker of the run's online caption
stages with its share of the limits (:mod:`pathgen.runs.shares`). They are told what to do
on stdin (settings included, so nothing secret goes on a command line) and stop when
their stdin closes: when the run ends, when it is stopped, or when ``pathgen run`` dies.
A helper that exits early leaves its items to the others: its leases are reclaimed at
once and the run goes on with fewer processes.

Example::

    helpers = CaptionProcesses(
        engine, settings, run_id, ["describe", "revise"], count=2, images_dir=Path("tiles")
    )
    await helpers.start()
    ...  # run this process's worker
    stats = await helpers.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs.owner import reclaim_dead_local_leases
from pathgen.runs.worker import WorkerStats
from pathgen.settings import Settings

log = logging.getLogger("pathgen.run")

ENTRY = "pathgen.workers.caption_process"


class CaptionProcesses:
    """Processes 1..``count``-1 of a run's online caption ``stages``."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        run_id: str,
        stages: Sequence[str],
        *,
        count: int,
        grace_s: float = 30.0,
        images_dir: Path | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.run_id = run_id
        self.stages = list(stages)
        self.count = count
        self.grace_s = grace_s
        self.images_dir = images_dir
        self._procs: list[asyncio.subprocess.Process] = []
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start the helpers (none when ``count`` is 1)."""
        for index in range(1, self.count):
            order = {
                "settings": self.settings.model_dump(mode="json"),
                "run_id": self.run_id,
                "stages": self.stages,
                "part": [index, self.count],
                "grace_s": self.grace_s,
                "images_dir": str(self.images_dir) if self.images_dir else None,
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                ENTRY,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # a terminal's Ctrl-C reaches the parent, which stops us
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(order).encode() + b"\n")
            await proc.stdin.drain()
            self._procs.append(proc)
        if self._procs:
            log.info("run %s: %s in %d processes", self.run_id, ", ".join(self.stages), self.count)
            self._watch = asyncio.create_task(self._watch_exits(), name="caption-processes")

    async def _watch_exits(self) -> None:
        """A helper that exits before it is stopped: say so and free its items now."""
        waits = {asyncio.ensure_future(p.wait()): i + 1 for i, p in enumerate(self._procs)}
        while waits:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                index = waits.pop(fut)
                if self._stopping:
                    continue
                freed = await reclaim_dead_local_leases(self.engine, self.run_id)
                log.error(
                    "caption process %d of run %s exited early (exit %s); %d of its items "
                    "went back to the queue, the others carry on",
                    index,
                    self.run_id,
                    fut.result(),
                    freed,
                )

    def signal_stop(self) -> None:
        """Ask every helper to stop claiming (in-flight calls finish)."""
        self._stopping = True
        for proc in self._procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()

    async def stop(self) -> WorkerStats:
        """Stop the helpers, wait for them (killing any that outlast the grace period) and
        return their stats added up."""
        self.signal_stop()
        total = WorkerStats()
        for proc in self._procs:
            assert proc.stdout is not None
            try:
                out = await asyncio.wait_for(proc.stdout.read(), self.grace_s + 30)
                await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                log.error("caption process pid %d did not stop: killed", proc.pid)
                continue
            lines = out.decode(errors="replace").strip().splitlines()
            with contextlib.suppress(ValueError, IndexError, TypeError):
                total.add(WorkerStats(**json.loads(lines[-1])))
        if self._watch is not None:
            await self._watch
        if self._procs:  # a killed helper's leases
            await reclaim_dead_local_leases(self.engine, self.run_id)
        return total
