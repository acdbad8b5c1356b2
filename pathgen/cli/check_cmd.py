"""``pathgen check``: the checks ``pathgen run`` makes before it starts, alone."""

from __future__ import annotations

from pathlib import Path

import typer

from pathgen.cli.context import console, run_async, state
from pathgen.cli.options import slide_entries


def check(
    ctx: typer.Context,
    config: Path | None = typer.Argument(
        None, help="pathgen.toml (default: --config / ./pathgen.toml)"
    ),
    manifest: Path | None = typer.Option(None, help="Slide manifest CSV (overrides run.manifest)."),
    stages: str | None = typer.Option(None, help="Comma-separated stages to check (default: all)."),
    probe: bool = typer.Option(
        False, "--probe", help="Also send one tiny request to each distinct provider."
    ),
) -> None:
    """Check a config without running it (exit 0 when every check passes, 2 if not).

    The checks `pathgen run` makes before it starts: settings, manifest, API key
    variables, templates, the model (loaded); with --probe, one token per provider.
    """
    from rich.markup import escape

    from pathgen.runs.graph import parse_stages
    from pathgen.runs.preflight import llm_stages, preflight
    from pathgen.settings import load_settings

    settings = load_settings(config) if config else state(ctx).settings
    chosen = parse_stages(stages)
    entries = slide_entries(settings, manifest)
    checked = run_async(lambda: preflight(settings, chosen, entries, probe_providers=probe))
    out = console()
    for note in checked.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    steps = llm_stages(settings, chosen)
    for step in steps:
        where = step.cfg.base_url or "default endpoint"
        out.print(
            f"  {step.setting}: {step.cfg.provider} {step.cfg.model} ({where})",
            highlight=False,
            markup=False,
        )
    what = "settings, manifest, keys, templates" + (", model" if checked.clip else "")
    probed = ", providers answered" if probe and steps else ""
    out.print(f"[green]ok[/green]: {len(entries)} slide(s); {what}{probed}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
