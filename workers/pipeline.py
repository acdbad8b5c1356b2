"""``pathgen run``: create or resume a run and drive it to the end in this process."""

from __future__ import annotations

from collections.abc import Sequence

from pathgen.runs.manifest import SlideEntry
from pathgen.runs.pipeline import RunSummary, run_pipeline
from pathgen.settings import Settings
from pathgen.types import PIPELINE_STAGES
from pathgen.workers.signals import run_until_signalled


def main(
    settings: Settings,
    entries: Sequence[SlideEntry],
    *,
    run_id: str | None = None,
    stages: Sequence[str] = PIPELINE_STAGES,
    log_format: str = "rich",
    show_progress: bool = True,
    grace_s: float = 30.0,
    redo: Sequence[str] = (),
    force: bool = False,
    probe: bool = False,
) -> RunSummary:
    """Run the pipeline until done, parked or stopped by SIGINT/SIGTERM."""
    return run_until_signalled(
        lambda stop: run_pipeline(
            settings,
            entries,
            run_id=run_id,
            stages=stages,
            stop=stop,
            log_format=log_format,
            show_progress=show_progress,
            grace_s=grace_s,
            redo=redo,
            force=force,
            probe=probe,
        )
    )
