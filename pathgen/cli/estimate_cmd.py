"""``pathgen estimate``: what a run's LLM calls will cost, before running it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pathgen.cli.context import console, print_wide, run_async, state
from pathgen.cli.options import slide_entries

if TYPE_CHECKING:
    from pathgen.runs.estimate import Estimate, StageActual
    from pathgen.settings import Settings


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def _estimate(settings: Settings, entries: list[Any], run_id: str) -> Estimate:
    from pathgen.runs.estimate import estimate_run, store_estimate
    from pathgen.runs.pipeline import open_store

    engine = await open_store(settings)
    try:
        est = await estimate_run(engine, settings, entries, run_id)
        await store_estimate(engine, est)
        return est
    finally:
        await engine.dispose()


def estimate_table(est: Estimate, actual: dict[str, StageActual] | None = None) -> Any:
    """The estimate per stage; with ``actual``, the actual figures beside it."""
    from rich.table import Table

    table = Table(title=f"estimate of run {est.run_id} ({est.tiles} tiles from {est.basis})")
    cols = ["stage", "calls", "input tok", "output tok", "cost", "batch cost", "wall time"]
    if actual is not None:
        cols += ["actual calls", "actual input", "actual output", "actual cost"]
    for col in cols:
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in est.stages:
        row = [
            s.stage,
            f"{s.calls:,}",
            f"{s.input_tokens:,}",
            f"{s.output_tokens:,}",
            f"${s.cost:,.2f}",
            f"${s.batch_cost:,.2f}",
            _duration(s.wall_s),
        ]
        if actual is not None:
            a = actual.get(s.stage)
            row += (
                [f"{a.calls:,}", f"{a.input_tokens:,}", f"{a.output_tokens:,}", f"${a.cost:,.2f}"]
                if a
                else ["0"] * 3 + ["$0.00"]
            )
        table.add_row(*row)
    return table


def estimate(
    ctx: typer.Context,
    config: Path | None = typer.Argument(
        None, help="pathgen.toml (default: --config / ./pathgen.toml)"
    ),
    manifest: Path | None = typer.Option(None, help="Slide manifest CSV (overrides run.manifest)."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Run id (default: run.name or derived from the config)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Estimate a run's LLM calls, tokens, cost (online and batch) and wall time.

    The estimate is stored with the run id; `pathgen status` shows it beside the actual
    figures once the run has made calls.
    """
    import json

    from pathgen.runs.registry import default_run_id
    from pathgen.settings import load_settings

    settings = load_settings(config) if config else state(ctx).settings
    rid = run_id or default_run_id(settings)
    entries = slide_entries(settings, manifest)
    est = run_async(lambda: _estimate(settings, entries, rid))
    if as_json:
        print(json.dumps(est.to_json()))
        return
    out = console()
    print_wide(out, estimate_table(est))
    out.print(
        f"total: ${est.total_cost:,.2f} online, ${est.total_batch_cost:,.2f} batch; "
        f"about {_duration(est.wall_s)} of calls (stages run side by side)",
        highlight=False,
    )
    if est.basis != "selections":
        out.print(
            f"[yellow]note:[/yellow] tiles per slide are an upper bound (from {est.basis}: "
            "top_k, twice with a report, + max_diverse); run the select stage first "
            "(`pathgen run --stages tile,embed,select`) for exact counts",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate)
