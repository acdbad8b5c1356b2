"""Accounts of the curation UI: roles, argon2 password hashes, expiring login sessions.

Roles, least to most: ``viewer`` (reads), ``curator`` (accepts, rejects, edits),
``reviewer`` (a curator who also does second reviews of the double-review sample) and
``admin`` (everything, and asks for double-review samples). Passwords are stored only as
argon2id hashes; a session cookie is a random token stored only as its SHA-256 digest.

Example::

    async with session_scope(engine) as session:
        await add_account(session, "ana", "curator", password)
        account = await authenticate(session, "ana", password)
        token = await start_session(session, account, ttl=timedelta(hours=12))
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.errors import StoreError
from pathgen.store.models import Account, WebSession, utcnow

ROLES = ("viewer", "curator", "reviewer", "admin")
MIN_PASSWORD = 8
MAX_NAME = 128
_HASHER = PasswordHasher()
#: Verified against when the account does not exist, so both cases take as long.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def role_at_least(role: str, needed: str) -> bool:
    """Whether ``role`` includes what ``needed`` may do (``curator`` ≥ ``viewer``, …)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise StoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StoreError(f"a password needs at least {MIN_PASSWORD} characters")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(c.isspace() for c in name):
        raise StoreError(f"an account name is 1-{MAX_NAME} characters without spaces: {name!r}")
    return name


async def any_accounts(session: AsyncSession) -> bool:
    """Whether the database has at least one enabled account."""
    return bool(await session.scalar(select(exists().where(Account.disabled.is_(False)))))


async def get_account(session: AsyncSession, name: str) -> Account:
    account = await session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise StoreError(f"no account named {name!r}: list them with `pathgen users list`")
    return account


async def add_account(session: AsyncSession, name: str, role: str, password: str) -> Account:
    """Create an account; raises :class:`StoreError` for a taken name or a weak password."""
    name = _check_name(name)
    _check_role(role)
    _check_password(password)
    if await session.scalar(select(Account.id).where(Account.name == name)) is not None:
        raise StoreError(f"an account named {name!r} exists: change it with `pathgen users passwd`")
    account = Account(name=name, role=role, password_hash=_HASHER.hash(password), disabled=False)
    session.add(account)
    await session.flush()
    return account


async def list_accounts(session: AsyncSession) -> list[Account]:
    return list(await session.scalars(select(Account).order_by(Account.name)))


async def set_password(session: AsyncSession, name: str, password: str) -> None:
    """Replace the password (and end the account's sessions)."""
    _check_password(password)
    account = await get_account(session, name)
    account.password_hash = _HASHER.hash(password)
    account.updated_at = utcnow()
    await session.execute(delete(WebSession).where(WebSession.account_id == account.id))


async def set_disabled(session: AsyncSession, name: str, disabled: bool = True) -> None:
    """Disable (or enable) an account; disabling ends its sessions at once."""
    account = await get_account(session, name)
    account.disabled = disabled
    account.updated_at = utcnow()
    if disabled:
        await session.execute(delete(WebSession).where(WebSession.account_id == account.id))


async def authenticate(session: AsyncSession, name: str, password: str) -> Account | None:
    """The enabled account ``name`` when ``password`` is its password, else ``None``."""
    account = await session.scalar(select(Account).where(Account.name == name.strip()))
    stored = account.password_hash if account is not None else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if account is None or account.disabled:
        return None
    if _HASHER.check_needs_rehash(stored):
        account.password_hash = _HASHER.hash(password)
    return account


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(session: AsyncSession, account: Account, *, ttl: timedelta) -> str:
    """A new login session for ``account``; returns the cookie token (stored hashed)."""
    now = utcnow()
    await session.execute(delete(WebSession).where(WebSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=_digest(token), account_id=account.id, expires_at=now + ttl))
    await session.flush()
    return token


async def session_account(session: AsyncSession, token: str) -> Account | None:
    """The enabled account of an unexpired session, else ``None``."""
    if not token or len(token) > 128:
        return None
    row = await session.scalar(
        select(Account)
        .join(WebSession, WebSession.account_id == Account.id)
        .where(
            WebSession.token_hash == _digest(token),
            WebSession.expires_at > utcnow(),
            Account.disabled.is_(False),
        )
    )
    return row


async def end_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))
