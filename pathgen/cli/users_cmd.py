"""``pathgen users``: accounts of the curation web UI (add, list, disable, passwd).

Passwords come from ``$PATHGEN_USER_PASSWORD`` or a hidden prompt, never from the
command line (argv is visible to every user of the machine and lands in shell history).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from pathgen.cli.context import console, print_wide, run_async, state

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
PASSWORD_ENV = "PATHGEN_USER_PASSWORD"
users_app = typer.Typer(
    help="Accounts of the curation web UI (pathgen serve).", no_args_is_help=True
)


def _password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _in_session(
    ctx: typer.Context, fn: Callable[[AsyncSession], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``fn`` in one transaction; ``create``: a missing SQLite file may be created."""
    from pathgen.store.engine import make_engine, session_scope

    url = state(ctx).settings.database.url

    async def go() -> T:
        engine = make_engine(url, create=create)
        try:
            async with session_scope(engine) as session:
                return await fn(session)
        finally:
            await engine.dispose()

    return run_async(go)


@users_app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Login name (no spaces)."),
    role: str = typer.Option(
        "curator", help="viewer (read-only), curator, reviewer (second reviews) or admin."
    ),
) -> None:
    """Create an account; the password comes from $PATHGEN_USER_PASSWORD or a prompt."""
    from pathgen.curation.accounts import add_account

    password = _password()
    account = _in_session(ctx, lambda s: add_account(s, name, role, password), create=True)
    console().print(f"account [bold]{account.name}[/bold] added ({account.role})")


@users_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the accounts with their role and state."""
    from rich.table import Table

    from pathgen.curation.accounts import list_accounts

    accounts = _in_session(ctx, list_accounts)
    table = Table("name", "role", "state", "created")
    for a in accounts:
        state_ = "disabled" if a.disabled else "active"
        table.add_row(a.name, a.role, state_, a.created_at.strftime("%Y-%m-%d %H:%M"))
    print_wide(console(), table)


@users_app.command("disable")
def disable(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    enable: bool = typer.Option(False, "--enable", help="Enable the account again."),
) -> None:
    """Disable an account (its sessions end at once), or enable it again."""
    from pathgen.curation.accounts import set_disabled

    _in_session(ctx, lambda s: set_disabled(s, name, not enable))
    console().print(f"account [bold]{name}[/bold] {'enabled' if enable else 'disabled'}")


@users_app.command("passwd")
def passwd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Set a new password (from $PATHGEN_USER_PASSWORD or a prompt); ends its sessions."""
    from pathgen.curation.accounts import set_password

    password = _password()
    _in_session(ctx, lambda s: set_password(s, name, password))
    console().print(f"password of [bold]{name}[/bold] changed")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
