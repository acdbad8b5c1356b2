"""``pathgen worker``: claim work from the database (start more to scale out)."""

from __future__ import annotations

import typer

from pathgen.cli.context import console, run_async, state
from pathgen.cli.summary import exit_with, print_summary


async def _require_run(url: str, run_id: str) -> None:
    from pathgen.runs.registry import require_run
    from pathgen.store.engine import make_engine

    engine = make_engine(url)
    try:
        await require_run(engine, run_id)
    finally:
        await engine.dispose()


def worker(
    ctx: typer.Context,
    stages: str | None = typer.Option(None, help="Comma-separated stages this worker takes."),
    concurrency: int | None = typer.Option(None, help="Max in-flight items per stage."),
    run_id: str | None = typer.Option(None, "--run", help="Only work on this run."),
    exit_when_idle: bool = typer.Option(False, help="Exit when the run has nothing left."),
    grace_s: float = typer.Option(30.0),
    check: bool = typer.Option(
        False, "--check", help="Before starting, send one tiny request to each provider."
    ),
) -> None:
    """Claim work from the database (start more on other machines to scale out).

    Exit codes with --run: as ``pathgen run`` for the worker's stages of that run; a
    worker stopped by SIGINT/SIGTERM exits 130.
    """
    from pathgen.errors import ConfigError
    from pathgen.exitcodes import ExitCode
    from pathgen.runs.graph import parse_stages
    from pathgen.workers.worker import main as worker_main

    if exit_when_idle and not run_id:
        raise ConfigError("--exit-when-idle needs --run RUN", key="--exit-when-idle")
    settings = state(ctx).settings
    if run_id and exit_when_idle:  # else a mistyped run "completes" at once, exit 0
        run_async(lambda: _require_run(settings.database.url, run_id))
    summary = worker_main(
        settings,
        stages=parse_stages(stages),
        concurrency=concurrency,
        run_id=run_id,
        exit_when_idle=exit_when_idle,
        grace_s=grace_s,
        probe=check,
    )
    stats = summary.stats
    console().print(
        f"worker done: {stats.done} done, {stats.failed} parked, "
        f"{stats.retried} retried, {stats.released} released"
    )
    if summary.outcome is not None and run_id is not None:
        print_summary(run_id, settings, "rich", outcome=summary.outcome)
        exit_with(summary.outcome)
    elif summary.interrupted:
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
