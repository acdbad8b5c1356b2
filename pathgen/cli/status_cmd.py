"""``pathgen status`` and ``pathgen retry``: watch a run, requeue its parked items."""

from __future__ import annotations

import typer

from pathgen.cli.context import console, print_wide, run_async, state
from pathgen.cli.summary import print_summary


async def _existing(url: str, run_id: str | None) -> str | None:
    """``run_id`` when that run exists (else a ConfigError naming the runs there), or the
    latest run when none is given (None when there is none)."""
    from pathgen.runs.registry import latest_run_id, require_run
    from pathgen.store.engine import make_engine

    engine = make_engine(url, create=False)
    try:
        if run_id is None:
            return await latest_run_id(engine)
        await require_run(engine, run_id)
        return run_id
    finally:
        await engine.dispose()


def status(
    ctx: typer.Context,
    run_id: str | None = typer.Argument(None, help="Run id (default: the latest run)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Per-stage counts, tokens and cost of a run, and what is parked (from any machine)."""
    from pathgen.errors import ConfigError

    settings = state(ctx).settings
    rid = run_async(lambda: _existing(settings.database.url, run_id))
    if rid is None:
        raise ConfigError("no runs in this database yet", key="RUN")
    print_summary(rid, settings, "json" if as_json else "rich")
    if not as_json:
        _print_estimate(settings.database.url, rid)


def _print_estimate(url: str, run_id: str) -> None:
    """The run's stored estimate beside the actual figures, when it was estimated."""
    from pathgen.cli.estimate_cmd import estimate_table
    from pathgen.runs.estimate import actual_usage, stored_estimate
    from pathgen.store.engine import make_engine

    async def read():  # noqa: ANN202 - a pair of optional results
        engine = make_engine(url, create=False)
        try:
            return await stored_estimate(engine, run_id), await actual_usage(engine, run_id)
        finally:
            await engine.dispose()

    est, actual = run_async(read)
    if est is not None:
        print_wide(console(), estimate_table(est, actual))


async def _retry(url: str, run_id: str, stage: str | None) -> int:
    from pathgen.runs import queue
    from pathgen.runs.registry import require_run
    from pathgen.store.engine import make_engine

    engine = make_engine(url, create=False)
    try:
        await require_run(engine, run_id)
        return await queue.retry_failed(engine, run_id, stage)
    finally:
        await engine.dispose()


def retry(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id."),
    stage: str | None = typer.Option(None, help="Only this stage (default: every stage)."),
) -> None:
    """Requeue a run's parked (failed) items and paused stages with fresh attempts."""
    from pathgen.runs.graph import parse_stages

    if stage is not None:
        parse_stages(stage, key="--stage")
    url = state(ctx).settings.database.url
    n = run_async(lambda: _retry(url, run_id, stage))
    console().print(f"requeued {n} item(s); run `pathgen run` or start workers to process them")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("retry")(retry)
