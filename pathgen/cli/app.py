"""The ``pathgen`` typer application and its entry point.

Each command module adds its commands with ``register(app)``. Importing this module
(what ``pathgen --help`` does) imports no database, model or web code: command modules
import those inside their functions (tests/test_layers.py checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from pathgen.cli import (  # one command module per line
    batch_cmd,
    captions_cmd,
    check_cmd,
    db_cmd,
    demo_cmd,
    estimate_cmd,
    eval_cmd,
    export_cmd,
    run_cmd,
    serve_cmd,
    status_cmd,
    synth_cmd,
    tile_cmd,
    tiles_cmd,
    train_cmd,
    users_cmd,
    worker_cmd,
)
from pathgen.cli.context import state
from pathgen.errors import ConfigError, PathgenError
from pathgen.exitcodes import ExitCode


def _error(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )


def _file_problem(exc: OSError) -> str:
    """A file or folder that cannot be read or written (an output under a file, a
    read-only or full disk, a missing input): the path, why, and what to do."""
    target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    return f"{target}: {exc.strerror or exc}: check the path, its permissions and free space"


class PathgenGroup(TyperGroup):
    """Turns pathgen's user errors into one line on stderr (no traceback) and an exit code:
    2 for a configuration that cannot start, 1 for other pathgen errors, an unreachable
    database and a file that cannot be read or written."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # ``pathgen ... | head``: click ends quietly; not a database problem
        except PathgenError as exc:
            _error(str(exc))
            code = ExitCode.CANNOT_START if isinstance(exc, ConfigError) else ExitCode.ERROR
            ctx.exit(int(code))
        except (typer.Exit, typer.Abort, TyperException):
            raise  # --help, usage errors, typer.Exit(code): typer reports them
        except Exception as exc:
            from pathgen.store.outage import connection_problem

            problem = connection_problem(exc)
            if problem is None and isinstance(exc, OSError) and exc.filename:
                problem = _file_problem(exc)
            if problem is None:
                raise
            _error(problem)
            ctx.exit(int(ExitCode.ERROR))


app = typer.Typer(
    cls=PathgenGroup,
    name="pathgen",
    help="Build pathology tile/caption datasets from whole-slide images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
COMMAND_MODULES = (  # one per line, same order as the import
    captions_cmd,
    check_cmd,
    export_cmd,
    db_cmd,
    run_cmd,
    worker_cmd,
    tile_cmd,
    status_cmd,
    synth_cmd,
    tiles_cmd,
    demo_cmd,
    eval_cmd,
    serve_cmd,
    train_cmd,
    estimate_cmd,
    batch_cmd,
    users_cmd,
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
    from pathgen import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
