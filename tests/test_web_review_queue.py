"""Review next: each curator gets a different unreviewed tile, then the next after an action."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pathgen.store.models import CurationTile, ReviewHold, utcnow
from pathgen.web import create_app
from tests.populate import Populated, populate
from tests.webutil import add_account, csrf_token, in_db, revision_shown, settings_for

PASSWORD = "a-long-enough-password"


@pytest.fixture
async def store(engine: AsyncEngine, db_url: str) -> tuple[str, Populated]:
    return db_url, await populate(engine)


@pytest.fixture
def clients(
    store: tuple[str, Populated],
) -> Iterator[tuple[TestClient, TestClient, str, Populated]]:
    url, p = store
    for name in ("ana", "ben"):
        add_account(url, name, "curator", PASSWORD)

    def app():  # noqa: ANN202 - one app (engine, event loop) per browser
        return create_app(settings_for(url), allowed_hosts=["testserver"])

    with TestClient(app()) as ana, TestClient(app()) as ben:
        for c, name in ((ana, "ana"), (ben, "ben")):
            token = csrf_token(c.get("/login").text)
            form = {"csrf_token": token, "name": name, "password": PASSWORD, "next": "/"}
            assert c.post("/login", data=form, follow_redirects=False).status_code == 303
        yield ana, ben, url, p


def _next(c: TestClient, run_id: str, **params: str) -> int | None:
    r = c.get(f"/runs/{run_id}/next", params=params, follow_redirects=False)
    if r.status_code == 200:
        assert 'id="queue-done"' in r.text
        return None
    assert r.status_code == 303, r.text
    match = re.match(r"/tiles/(\d+)\?", r.headers["location"])
    assert match and "queue=1" in r.headers["location"]
    return int(match.group(1))


def test_two_curators_get_different_tiles_and_move_on_after_each_action(
    clients: tuple[TestClient, TestClient, str, Populated],
) -> None:
    ana, ben, url, p = clients
    a1 = _next(ana, p.run_id)
    b1 = _next(ben, p.run_id)
    assert a1 == p.tile_ids[0] and b1 == p.tile_ids[1]
    # ben sees ana's hold on her tile
    assert "ana is reviewing this tile" in ben.get(f"/tiles/{a1}?run={p.run_id}").text
    # ana accepts in queue mode: the answer leads to the next tile nobody holds
    page = ana.get(f"/tiles/{a1}?run={p.run_id}&queue=1").text
    form = {
        "csrf_token": csrf_token(page),
        "run_id": p.run_id,
        "revision_id": revision_shown(page),
        "decision": "accept",
        "next": re.search(r'name="next" value="([^"]+)"', page).group(1).replace("&amp;", "&"),
    }
    r = ana.post(f"/tiles/{a1}/review", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/runs/{p.run_id}/next")
    assert _next(ana, p.run_id) == p.tile_ids[2]
    # a filter narrows the queue; nothing left in it → the "done" page
    assert _next(ben, p.run_id, organ="lung") is None

    # an expired hold is free again
    async def expire(s: AsyncSession) -> None:
        await s.execute(update(ReviewHold).values(expires_at=utcnow() - timedelta(seconds=1)))

    in_db(url, expire)
    assert _next(ben, p.run_id) == p.tile_ids[1]


def test_queue_skips_tiles_without_a_final_caption_and_viewers_get_none(
    clients: tuple[TestClient, TestClient, str, Populated],
) -> None:
    ana, _, url, p = clients

    async def no_final(s: AsyncSession) -> None:
        await s.execute(
            update(CurationTile)
            .where(CurationTile.tile_id == p.tile_ids[0])
            .values(final_revision_id=None)
        )

    in_db(url, no_final)
    assert _next(ana, p.run_id) == p.tile_ids[1]
    add_account(url, "vic", "viewer", PASSWORD)
    with TestClient(create_app(settings_for(url), allowed_hosts=["testserver"])) as vic:
        token = csrf_token(vic.get("/login").text)
        form = {"csrf_token": token, "name": "vic", "password": PASSWORD, "next": "/"}
        vic.post("/login", data=form)
        assert vic.get(f"/runs/{p.run_id}/next", follow_redirects=False).status_code == 403
