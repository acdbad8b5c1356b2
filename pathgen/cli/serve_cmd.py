"""``pathgen serve``: the curation web UI (FastAPI + uvicorn).

On a loopback address without accounts the UI is single-user (reviews go under
``--reviewer``). Anywhere else it needs accounts (``pathgen users add``) and refuses to
start without them, unless ``--insecure-no-auth`` says otherwise (with a loud warning).
"""

from __future__ import annotations

import typer
from rich.console import Console

from pathgen.cli.context import run_async, state

console = Console()
err = Console(stderr=True)


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free port)."),
    reviewer: str | None = typer.Option(
        None, help="Reviewer name while the database has no accounts (default: $USER)."
    ),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="Host name browsers use for this server (repeatable); loopback names and a "
        "concrete --host are always allowed. Other Host headers get 400.",
    ),
    behind_https: bool = typer.Option(
        False, help="A TLS reverse proxy is in front: https URLs and Secure cookies."
    ),
    ssl_certfile: str | None = typer.Option(None, help="Serve TLS with this certificate."),
    ssl_keyfile: str | None = typer.Option(None, help="Private key of --ssl-certfile."),
    insecure_no_auth: bool = typer.Option(
        False, help="Allow a non-loopback --host without accounts: anyone who reaches it edits."
    ),
    session_hours: float = typer.Option(12.0, min=0.1, help="Login sessions expire after this."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the curation web UI: runs, tiles, revision history, review and search."""
    from datetime import timedelta

    import uvicorn

    from pathgen.curation.accounts import any_accounts
    from pathgen.errors import CannotStart
    from pathgen.store.engine import make_engine, read_scope
    from pathgen.web.app import check_schema, create_app
    from pathgen.web.auth import LOOPBACK_HOSTS, is_loopback

    settings = state(ctx).settings

    async def _check() -> bool:
        engine = make_engine(settings.database.url, create=False)
        try:
            await check_schema(engine)
            async with read_scope(engine) as session:
                return await any_accounts(session)
        finally:
            await engine.dispose()

    has_accounts = run_async(_check)
    if not is_loopback(host) and not has_accounts:
        if not insecure_no_auth:
            raise CannotStart(
                [
                    (
                        "",
                        "--host",
                        f"{host} is reachable from other machines and the database has no "
                        "accounts: add one with `pathgen users add NAME --role admin` (or "
                        "bind 127.0.0.1; --insecure-no-auth serves without logins)",
                    )
                ]
            )
        err.print(
            "[bold red]WARNING: serving WITHOUT LOGIN on a non-loopback address: anyone who "
            f"can reach {host}:{port} can read and change every caption.[/bold red]"
        )
    hosts = [*LOOPBACK_HOSTS, *allowed_host]
    if host not in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        hosts.append(f"[{host}]" if ":" in host else host)
    app = create_app(
        settings,
        reviewer=reviewer,
        allowed_hosts=hosts,
        behind_https=behind_https,
        session_ttl=timedelta(hours=session_hours),
    )
    scheme = "https" if ssl_certfile else "http"
    console.print(f"pathgen curation UI on [bold]{scheme}://{host}:{port}/[/bold] (Ctrl-C to stop)")
    if not has_accounts:
        console.print(
            f"no accounts: single-user mode, reviews recorded as {app.state.default_reviewer}"
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
