"""``pathgen db``: schema migrations."""

from __future__ import annotations

import typer

from pathgen.cli.context import console, run_async, state

db_app = typer.Typer(help="Create and migrate the database schema (Alembic).", no_args_is_help=True)


async def _migrate(url: str, action: str, revision: str) -> str | None:
    from pathgen.store import migrate
    from pathgen.store.engine import make_engine

    engine = make_engine(url, create=action == "upgrade")
    try:
        if action == "upgrade":
            await migrate.upgrade(engine, revision)
        elif action == "downgrade":
            await migrate.downgrade(engine, revision)
        return await migrate.current(engine)
    finally:
        await engine.dispose()


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    url = state(ctx).settings.database.url
    rev = run_async(lambda: _migrate(url, "upgrade", revision))
    console().print(f"database at revision [bold]{rev}[/bold]")


@db_app.command("downgrade")
def downgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("base"),
    yes: bool = typer.Option(False, "--yes", help="Drop the tables and columns, and their data."),
) -> None:
    """Downgrade the schema to REVISION (default: base, i.e. drop every table).

    A downgrade drops the tables and columns of the later migrations with their rows, so
    it asks for ``--yes``.
    """
    url = state(ctx).settings.database.url
    if not yes:
        from pathgen.errors import ConfigError

        raise ConfigError(
            f"downgrading to {revision} drops the tables and columns of every later "
            "migration, with their data: back the database up, then pass --yes",
            key="--yes",
        )
    rev = run_async(lambda: _migrate(url, "downgrade", revision))
    console().print(f"database at revision [bold]{rev or 'base'}[/bold]")


@db_app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the schema revision of the configured database."""
    from pathgen.store import migrate

    url = state(ctx).settings.database.url
    rev = run_async(lambda: _migrate(url, "current", ""))
    head = migrate.head()
    note = "up to date" if rev == head else f"head is {head}: run `pathgen db upgrade`"
    console().print(f"{rev or 'base (empty database)'} ({note})")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
