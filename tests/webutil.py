"""Helpers shared by the web UI tests: a populated app, HTML scraping, database checks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.settings import DatabaseSettings, Settings
from pathgen.store.engine import make_engine, session_scope

T = TypeVar("T")

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def settings_for(url: str) -> Settings:
    return Settings(database=DatabaseSettings(url=url))


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF token field"
    return match.group(1)


def stage_cell(html: str, stage: str, col: str) -> str:
    row = re.search(rf'<tr data-stage="{re.escape(stage)}">(.*?)</tr>', html, re.S)
    assert row, f"dashboard has no row for stage {stage}"
    cell = re.search(rf'data-col="{col}"[^>]*>([^<]*)<', row.group(1))
    assert cell, f"row {stage} has no column {col}"
    return cell.group(1).strip()


def stat(html: str, name: str) -> str:
    match = re.search(rf'data-stat="{name}"[^>]*><dt>[^<]*</dt><dd>([^<]*)</dd>', html)
    assert match, f"dashboard has no stat {name}"
    return match.group(1).strip()


def card_ids(html: str) -> list[int]:
    """Tile ids of the grid cards on a page, in order."""
    return [int(t) for t in re.findall(r'<article class="card" data-tile="(\d+)"', html)]


def in_db(url: str, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``fn(session)`` against the database at ``url`` (from sync test code)."""

    async def go() -> T:
        engine = make_engine(url)
        try:
            async with session_scope(engine) as session:
                return await fn(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


_REVISION = re.compile(r'name="revision_id" value="(\d+)"')


def revision_shown(html: str) -> str:
    """The revision id the page's review form carries."""
    match = _REVISION.search(html)
    assert match, "page has no review form"
    return match.group(1)


def add_account(url: str, name: str, role: str, password: str) -> None:
    from pathgen.curation.accounts import add_account as add

    async def go(s: AsyncSession) -> None:
        await add(s, name, role, password)

    in_db(url, go)
