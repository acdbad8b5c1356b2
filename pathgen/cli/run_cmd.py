"""``pathgen run``: run or resume the whole pipeline for a manifest, in this process."""

from __future__ import annotations

from pathlib import Path

import typer

from pathgen.cli.context import state
from pathgen.cli.options import check_log_format, slide_entries
from pathgen.cli.summary import exit_with, print_summary


def run(
    ctx: typer.Context,
    config: Path | None = typer.Argument(
        None, help="pathgen.toml (default: --config / ./pathgen.toml)"
    ),
    manifest: Path | None = typer.Option(None, help="Slide manifest CSV (overrides run.manifest)."),
    run_id: str | None = typer.Option(
        None,
        "--run-id",
        help="Run id (default: run.name or derived from the config, so a rerun resumes).",
    ),
    stages: str | None = typer.Option(None, help="Comma-separated stages to run (default: all)."),
    log_format: str = typer.Option("rich", help="rich (live table) or json (lines, for logs)."),
    grace_s: float = typer.Option(30.0, help="Seconds in-flight items get to finish after Ctrl-C."),
    redo: str | None = typer.Option(
        None,
        help="Caption stage(s) to run again, with the stages after them (e.g. after "
        "changing a model or prompt); same model+prompt outputs are reused. "
        "'select': embed with the current \\[model] and select again (a new selection "
        "round); newly kept tiles are captioned, kept ones keep their captions.",
    ),
    force: bool = typer.Option(False, help="With --redo: always make new revisions."),
    model_pretrained: Path | None = typer.Option(
        None,
        "--model-pretrained",
        help="Use this checkpoint as \\[model] pretrained (e.g. a `pathgen train-clip` "
        "result, with --redo select).",
    ),
    check: bool = typer.Option(
        False, "--check", help="Before starting, send one tiny request to each provider."
    ),
) -> None:
    """Run (or resume) the whole pipeline for the manifest in the config.

    Exit codes: 0 all done, 2 cannot start, 3 parked items, 4 work left that no worker can
    take, 5 budget reached, 130 interrupted (see README).
    """
    from pathgen.errors import ConfigError
    from pathgen.runs.graph import parse_stages
    from pathgen.settings import load_settings
    from pathgen.workers.pipeline import main as run_main

    check_log_format(log_format)
    settings = load_settings(config) if config else state(ctx).settings
    if model_pretrained is not None:
        model = settings.model.model_copy(update={"pretrained": str(model_pretrained.resolve())})
        settings = settings.model_copy(update={"model": model})
    if force and not redo:
        raise ConfigError("--force only applies with --redo STAGE", key="--force")
    summary = run_main(
        settings,
        slide_entries(settings, manifest),
        run_id=run_id,
        stages=parse_stages(stages),
        log_format=log_format,
        grace_s=grace_s,
        redo=parse_stages(redo, key="--redo") if redo else (),
        force=force,
        probe=check,
    )
    print_summary(
        summary.run_id, settings, log_format, outcome=summary.outcome, notes=summary.notes
    )
    exit_with(summary.outcome)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
