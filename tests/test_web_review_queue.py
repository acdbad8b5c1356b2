"""Review next: each curator gets a different unreviewed tile, then the next after an action."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pathgen.store.models import CaptionRevision, CurationTile, ReviewHold, utcnow
from pathgen.web import create_app
from tests.populate import SUMMARIES, Populated, populate
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


def _client(url: str, name: str) -> TestClient:
    c = TestClient(create_app(settings_for(url), allowed_hosts=["testserver"]))
    c.__enter__()
    token = csrf_token(c.get("/login").text)
    form = {"csrf_token": token, "name": name, "password": PASSWORD, "next": "/"}
    assert c.post("/login", data=form, follow_redirects=False).status_code == 303
    return c


def _act(c: TestClient, tile_id: int, run_id: str, second: bool = False, **form: str) -> str:
    """Review the tile through its page (``second``: as "Second review next" opens it);
    returns the page the action was taken on."""
    page = c.get(f"/tiles/{tile_id}", params={"run": run_id, "second": int(second)}).text
    data = {"csrf_token": csrf_token(page), "run_id": run_id, "revision_id": revision_shown(page)}
    if second:
        assert 'id="blind-review"' in page and 'name="second" value="1"' in page
        data["second"] = "1"
    action = "edit" if "text" in form else "review"
    r = c.post(f"/tiles/{tile_id}/{action}", data={**data, **form}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return page


def test_double_review_sample_second_reviews_and_agreement(store: tuple[str, Populated]) -> None:
    url, p = store
    add_account(url, "ada", "admin", PASSWORD)
    add_account(url, "ana", "curator", PASSWORD)
    add_account(url, "rob", "reviewer", PASSWORD)
    ada, ana, rob = _client(url, "ada"), _client(url, "ana"), _client(url, "rob")
    try:
        run_page = ana.get(f"/runs/{p.run_id}").text
        assert 'id="double-review"' not in run_page  # admins only
        token = csrf_token(ana.get(f"/runs/{p.run_id}").text)
        r = ana.post(f"/runs/{p.run_id}/double-review", data={"csrf_token": token, "percent": 100})
        assert r.status_code == 403
        token = csrf_token(ada.get(f"/runs/{p.run_id}").text)
        form = {"csrf_token": token, "percent": "100"}
        assert ada.post(f"/runs/{p.run_id}/double-review", data=form).status_code == 200
        t1, t2, t3 = p.tile_ids[:3]
        # nothing is reviewed once yet: no second review to hand out
        assert _next(rob, p.run_id, second="1") is None
        assert ana.get(f"/runs/{p.run_id}/next?second=1").status_code == 403  # a curator
        _act(ana, t1, p.run_id, decision="accept")
        _act(ana, t2, p.run_id, text="Ana's wording of the stroma.")
        _act(ana, t3, p.run_id, decision="reject")
        # A second review is blind: the model's caption, not ana's edit or decision.
        assert _next(rob, p.run_id, second="1") == t1
        page = _act(rob, t1, p.run_id, second=True, decision="accept")
        assert "accepted" not in page and ">ana<" not in page
        assert _next(rob, p.run_id, second="1") == t2
        page = _act(rob, t2, p.run_id, second=True, text="Rob's wording of the dense stroma.")
        assert "Ana's wording" not in page and "Ana&#39;s wording" not in page
        assert revision_shown(page) == str(p.summarize_ids[1]) and SUMMARIES[1] in page
        assert "edited" not in page and ">ana<" not in page
        assert _next(rob, p.run_id, second="1") == t3
        page = _act(rob, t3, p.run_id, second=True, decision="accept")
        assert "rejected" not in page and ">ana<" not in page
        assert _next(rob, p.run_id, second="1") is None  # each sampled tile twice, no more
        # Outside a second review (or once it is done) the page shows everything.
        after = rob.get(f"/tiles/{t2}", params={"run": p.run_id, "second": 1}).text
        assert 'id="blind-review"' not in after and "Rob&#39;s wording" in after
        assert "Ana&#39;s" in after and ">ana<" in after
        # The form of a blind review is refused once the tile is reviewed twice.
        token = csrf_token(after)
        form = {"csrf_token": token, "run_id": p.run_id, "second": "1", "decision": "accept"}
        late = rob.post(f"/tiles/{t1}/review", data={**form, "revision_id": p.summarize_ids[0]})
        assert late.status_code == 409 and "second review" in late.text
    finally:
        for c in (ada, ana, rob):
            c.__exit__(None, None, None)

    from pathgen.eval.agreement import agreement

    async def report(s: AsyncSession) -> dict:
        return await agreement(s, p.run_id)

    async def parents(s: AsyncSession) -> dict[str, int | None]:
        rows = await s.execute(
            select(CaptionRevision.created_by, CaptionRevision.parent_id).where(
                CaptionRevision.stage == "human"
            )
        )
        return {who: parent for who, parent in rows}

    # both edits correct the model's caption, independently
    assert in_db(url, parents) == {"ana": p.summarize_ids[1], "rob": p.summarize_ids[1]}
    got = in_db(url, report)
    assert got["sampled_tiles"] == len(p.tile_ids)
    assert (got["double_reviewed"], got["decision_pairs"], got["edit_pairs"]) == (3, 2, 1)
    assert got["observed_agreement"] == 0.5 and got["kappa"] == 0.0
    assert 0 < got["edit_distance"]["mean"] < 1
