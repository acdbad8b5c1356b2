"""``pathgen demo``: the whole pipeline on synthetic data, offline, in a few minutes."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pathgen.cli.context import console, run_async
from pathgen.cli.summary import exit_with, print_summary

NOTICE = (
    "This demo uses a tiny CLIP with RANDOM weights and the offline provider: it demonstrates "
    "the machinery (tiling, embedding, selection, describe → degrade → revise → summarize, "
    "provenance, resume), not caption quality. For real captions configure a PathGen-CLIP "
    "checkpoint and a VLM endpoint (see 'A real run' in README.md)."
)


async def _samples(url: str, run_id: str, n: int = 5) -> list[tuple[int, str]]:
    from pathgen.store.captions import final_captions
    from pathgen.store.engine import make_engine, session_scope

    engine = make_engine(url)
    try:
        async with session_scope(engine) as session:
            finals = await final_captions(session, run_id)
    finally:
        await engine.dispose()
    return [(t, finals[t].text) for t in sorted(finals)[:n]]


def demo(
    directory: Path = typer.Option(Path("demo-run"), "--dir", help="Where the demo lives."),
    log_format: str = typer.Option("rich", help="rich or json progress output."),
) -> None:
    """Make synthetic slides and run the full pipeline on them (SQLite, offline)."""
    from rich.panel import Panel

    from pathgen.runs.demo import prepare_demo
    from pathgen.runs.manifest import read_manifest
    from pathgen.settings import load_settings
    from pathgen.workers.pipeline import main as run_main

    out = console()
    out.print(Panel(NOTICE, title="pathgen demo", border_style="yellow"))
    config = prepare_demo(directory)
    settings = load_settings(config)
    summary = run_main(settings, read_manifest(settings.run.manifest), log_format=log_format)
    print_summary(summary.run_id, settings, log_format, outcome=summary.outcome)
    samples = run_async(lambda: _samples(settings.database.url, summary.run_id))
    out.print("\n[bold]Sample captions[/bold] (random weights: not meaningful):")
    for tile_id, text in samples:
        out.print(f"  tile {tile_id}: {text}", highlight=False, markup=False)
    exe = Path(sys.executable).parent / "pathgen"
    for line in (  # whole lines, to copy and paste: never wrapped, no markup
        f"\nconfig:    {config}",
        f"database:  {settings.database.url}",
        f"previews:  {settings.tiling.preview_dir}",
        f"next:      {exe} -c {config} status {summary.run_id}",
        f"           {exe} -c {config} serve",
    ):
        out.print(line, soft_wrap=True, markup=False, highlight=False)
    out.print(NOTICE, style="yellow")
    exit_with(summary.outcome)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
