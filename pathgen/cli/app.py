"""The ``pathgen`` typer application and its entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from pathgen import __version__
from pathgen.cli import (  # one command module per line
    captions_cmd,
    db_cmd,
    demo_cmd,
    eval_cmd,
    export_cmd,
    run_cmd,
    serve_cmd,
    synth_cmd,
    tiles_cmd,
    train_cmd,
)
from pathgen.cli.context import state
from pathgen.errors import ConfigError, PathgenError
from pathgen.store.outage import connection_problem

err_console = Console(stderr=True)


class PathgenGroup(TyperGroup):
    """Turns pathgen's user errors into one line on stderr (no traceback) and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PathgenError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            ctx.exit(2 if isinstance(exc, ConfigError) else 1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            problem = connection_problem(exc)
            if problem is None:
                raise
            err_console.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
            ctx.exit(1)


app = typer.Typer(
    cls=PathgenGroup,
    name="pathgen",
    help="Build pathology tile/caption datasets from whole-slide images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
COMMAND_MODULES = (  # one per line, same order as the import
    captions_cmd,
    export_cmd,
    db_cmd,
    run_cmd,
    synth_cmd,
    tiles_cmd,
    demo_cmd,
    eval_cmd,
    serve_cmd,
    train_cmd,
)
for module in COMMAND_MODULES:
    module.register(app)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Settings file (default: ./pathgen.toml when present)."
    ),
) -> None:
    state(ctx).config_path = config


@app.command()
def version() -> None:
    """Print the pathgen version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
