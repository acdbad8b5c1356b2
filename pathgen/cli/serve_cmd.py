"""``pathgen serve``: the curation web UI (FastAPI + uvicorn)."""

from __future__ import annotations

import typer
from rich.console import Console

from pathgen.cli.context import run_async, state

console = Console()


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free port)."),
    reviewer: str | None = typer.Option(
        None, help="Default reviewer name for reviews (default: $USER); curators can change it."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the curation web UI: runs, tiles, revision history, review and search."""
    import uvicorn

    from pathgen.store.engine import make_engine
    from pathgen.web.app import check_schema, create_app

    settings = state(ctx).settings

    async def _check() -> None:
        engine = make_engine(settings.database.url)
        try:
            await check_schema(engine)
        finally:
            await engine.dispose()

    run_async(_check)
    app = create_app(settings, reviewer=reviewer)
    console.print(f"pathgen curation UI on [bold]http://{host}:{port}/[/bold] (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
