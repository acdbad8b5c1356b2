"""``pathgen worker``: claim and process items of some stages from the shared database."""

from __future__ import annotations

from collections.abc import Sequence

from pathgen.runs.pipeline import WorkerSummary, run_worker
from pathgen.settings import Settings
from pathgen.types import PIPELINE_STAGES
from pathgen.workers.signals import run_until_signalled


def main(
    settings: Settings,
    *,
    stages: Sequence[str] = PIPELINE_STAGES,
    concurrency: int | None = None,
    run_id: str | None = None,
    exit_when_idle: bool = False,
    grace_s: float = 30.0,
    probe: bool = False,
) -> WorkerSummary:
    """Work until stopped by SIGINT/SIGTERM (or, with ``exit_when_idle``, until idle)."""
    return run_until_signalled(
        lambda stop: run_worker(
            settings,
            stages=stages,
            concurrency=concurrency,
            run_id=run_id,
            stop=stop,
            exit_when_idle=exit_when_idle,
            grace_s=grace_s,
            probe=probe,
        )
    )
