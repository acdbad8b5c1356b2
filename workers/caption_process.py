"""A helper process of ``pathgen run``: its share of the run's spread caption stages.

Started by :class:`pathgen.runs.caption_processes.CaptionProcesses` as
``python -m pathgen.workers.caption_process``. The first line on stdin is a JSON object
(``settings``, ``run_id``, ``stages``, ``part`` = [index, count], ``grace_s``,
``images_dir``: the folder where the run's processes share encoded tiles); stdin
then stays open, and its end (the parent stopped it, or died) stops this worker: in-flight
calls finish, leftovers are released. The last line on stdout is the worker's
:class:`~pathgen.runs.worker.WorkerStats` as JSON. SIGINT/SIGTERM stop it the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import threading
from pathlib import Path

from pathgen.runs.pipeline import run_worker
from pathgen.settings import Settings
from pathgen.workers.signals import run_until_signalled


def _stop_on_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` once stdin ends (read in a daemon thread: it blocks)."""

    def watch() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def _work(stop: asyncio.Event, order: dict) -> str:
    _stop_on_eof(asyncio.get_running_loop(), stop)
    index, count = order["part"]
    summary = await run_worker(
        Settings.model_validate(order["settings"]),
        stages=order["stages"],
        run_id=order["run_id"],
        stop=stop,
        grace_s=order["grace_s"],
        part=(index, count),
        images_dir=Path(order["images_dir"]) if order.get("images_dir") else None,
    )
    return json.dumps(dataclasses.asdict(summary.stats))


def main() -> None:
    order = json.loads(sys.stdin.buffer.readline())
    print(run_until_signalled(lambda stop: _work(stop, order)), flush=True)


if __name__ == "__main__":
    main()
