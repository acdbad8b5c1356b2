"""``pathgen tile``: the tile stage alone, with a summary of failed slides and why."""

from __future__ import annotations

from pathlib import Path

import typer

from pathgen.cli.context import console, run_async, state
from pathgen.cli.options import check_log_format, slide_entries
from pathgen.cli.summary import exit_with


async def _counts(url: str, run_id: str):  # noqa: ANN202
    from pathgen.runs.report import slide_counts, slide_problems, slide_readers
    from pathgen.store.engine import make_engine

    engine = make_engine(url)
    try:
        return (
            await slide_counts(engine, run_id),
            await slide_problems(engine, run_id),
            await slide_readers(engine, run_id),
        )
    finally:
        await engine.dispose()


def tile(
    ctx: typer.Context,
    slides: list[str] = typer.Argument(
        None, help="Slide files or folders (default: the config's run.manifest)."
    ),
    manifest: Path | None = typer.Option(None, help="Manifest CSV: path[,mpp,report,label,organ]."),
    mpp: float | None = typer.Option(None, help="Target µm/px (default tiling.mpp, 0.5)."),
    tile_size: int | None = typer.Option(None, help="Tile side in pixels at the target µm/px."),
    assume_mpp: float | None = typer.Option(None, help="µm/px for slides that record none."),
    preview_dir: Path | None = typer.Option(None, help="Write a preview PNG per slide here."),
    run_id: str | None = typer.Option(None, "--run-id"),
    log_format: str = typer.Option("rich"),
) -> None:
    """Tile slides (the tile stage alone): find tissue, cut tiles, store them."""
    from pydantic import ValidationError
    from rich.markup import escape

    from pathgen.errors import ConfigError
    from pathgen.runs import registry
    from pathgen.workers.pipeline import main as run_main

    check_log_format(log_format)
    settings = state(ctx).settings
    overrides = {
        k: v
        for k, v in {
            "mpp": mpp,
            "tile_size": tile_size,
            "assume_mpp": assume_mpp,
            "preview_dir": str(preview_dir) if preview_dir else None,
        }.items()
        if v is not None
    }
    if overrides:
        try:
            tiling = settings.tiling.model_validate({**settings.tiling.model_dump(), **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            option = "--" + str(first["loc"][0]).replace("_", "-")
            raise ConfigError(first["msg"], key=option) from None
        settings = settings.model_copy(update={"tiling": tiling})
    entries = slide_entries(settings, manifest, slides)
    if not entries:
        raise ConfigError("no slides given: pass files, folders or --manifest", key="SLIDES")
    summary = run_main(
        settings,
        entries,
        run_id=run_id or f"tile-{registry.default_run_id(settings)}",
        stages=["tile"],
        log_format=log_format,
    )
    by_status, problems, readers = run_async(lambda: _counts(settings.database.url, summary.run_id))
    out = console()
    out.print(f"slides tiled: {by_status.get('tiled', 0)}, failed: {by_status.get('failed', 0)}")
    if readers:
        out.print("  by reader: " + ", ".join(f"{r} {n}" for r, n in readers.items()))
    for p in problems:
        via = f" ({p.reader})" if p.reader else ""
        out.print(f"  [red]{p.reason}[/red] {escape(f'{p.path}{via}: {p.error}')}", soft_wrap=True)
    out.print(summary.outcome.last_line(), highlight=False, markup=False, soft_wrap=True)
    exit_with(summary.outcome)


def register(app: typer.Typer) -> None:
    app.command("tile")(tile)
