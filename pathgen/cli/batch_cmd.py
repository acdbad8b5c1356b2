"""``pathgen batch export`` / ``import``: a caption stage's calls as an OpenAI batch file,
for vLLM ``run-batch`` or any offline engine, and its output file back as revisions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pathgen.cli.context import console, run_async, state

if TYPE_CHECKING:
    from pathgen.settings import Settings

batch_app = typer.Typer(
    help="Batch mode through files (self-hosted engines).", no_args_is_help=True
)


async def _with_store(settings: Settings, work: Any) -> Any:
    from pathgen.runs.pipeline import open_store

    engine = await open_store(settings, create=False)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


@batch_app.command("export")
def export(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id."),
    stage: str = typer.Option(
        ..., help="Caption stage: describe, fuse, degrade, revise, summarize."
    ),
    out: Path = typer.Option(..., help="The batch input file to write (JSONL)."),
    limit: int | None = typer.Option(None, help="At most this many items (default: all queued)."),
    lease_hours: float = typer.Option(
        24.0,
        help="The exported items stay reserved this long; after that they return to the queue.",
    ),
) -> None:
    """Reserve a stage's queued items and write their requests (OpenAI batch JSONL)."""
    from pathgen.runs.batch_files import export_stage

    settings = state(ctx).settings
    report = run_async(
        lambda: _with_store(
            settings,
            lambda engine: export_stage(
                engine, settings, run_id, stage, out, limit=limit, lease_s=lease_hours * 3600
            ),
        )
    )
    console().print(
        f"batch {report.batch_id}: wrote {report.written} request(s) to {out}"
        + (f"; {report.reused} item(s) reused an existing output" if report.reused else "")
        + f"; run the file, then `pathgen batch import {run_id} OUTPUT.jsonl`",
        highlight=False,
    )


@batch_app.command("import")
def import_(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id."),
    output: Path = typer.Argument(..., help="The engine's batch output file (JSONL)."),
) -> None:
    """Store a batch output file's answers as revisions (re-importing changes nothing)."""
    from pathgen.errors import ConfigError
    from pathgen.runs.batch_files import import_results

    if not output.is_file():
        raise ConfigError("batch output file not found", path=str(output))
    settings = state(ctx).settings
    r = run_async(
        lambda: _with_store(
            settings, lambda engine: import_results(engine, settings, run_id, output)
        )
    )
    console().print(
        f"imported {r.done} result(s); {r.failed} failed line(s) back to the queue; "
        f"{r.skipped} already imported or no longer reserved; {r.released} item(s) without "
        "a line released to the queue",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(batch_app, name="batch")
