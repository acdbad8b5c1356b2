"""Who is asking, and from which host: logins, roles and the Host allow-list.

When the database has accounts, every page but ``/login`` and ``/static`` needs a login
session (cookie ``pathgen_session``: random, HttpOnly, SameSite=Lax, ``Secure`` behind
HTTPS; stored server side as a digest, expiring). Without accounts the UI is single-user:
everyone is the server's ``--reviewer`` name; ``pathgen serve`` allows that only on a
loopback address (or with ``--insecure-no-auth``).

A request whose ``Host`` header is not on the allow-list is refused (400) before
anything else: a page served under an attacker's name (DNS rebinding) would otherwise be
same-origin with the attacker's scripts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response

from pathgen.curation.accounts import any_accounts, role_at_least, session_account
from pathgen.store.engine import read_scope

SESSION_COOKIE = "pathgen_session"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
#: Paths open without a login (the login form itself, its stylesheet and scripts).
PUBLIC_PREFIXES = ("/login", "/static/")


@dataclass(frozen=True)
class Principal:
    """The person behind a request: an account, or the single local user (no accounts)."""

    name: str
    role: str
    logged_in: bool

    def may(self, role: str) -> bool:
        return role_at_least(self.role, role)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address a server binds to) is this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """``Host`` header without its port, lower case (``[::1]:8000`` → ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(request: Request, allowed: frozenset[str]) -> bool:
    return host_name(request.headers.get("host", "")) in allowed


async def identify(request: Request) -> Principal | None:
    """The request's principal, or ``None`` when a login is needed and there is none."""
    token = request.cookies.get(SESSION_COOKIE, "")
    async with read_scope(request.app.state.engine) as session:
        if token:
            account = await session_account(session, token)
            if account is not None:
                return Principal(account.name, account.role, logged_in=True)
        if await any_accounts(session):
            return None
    return Principal(request.app.state.default_reviewer, "admin", logged_in=False)


def require(request: Request, role: str) -> Principal:
    """The principal, if their role allows ``role``'s actions; else 403."""
    user: Principal = request.state.user
    if not user.may(role):
        raise HTTPException(403, f"your role ({user.role}) cannot do this: it needs {role}")
    return user


def set_session_cookie(response: Response, token: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
