"""Curators review instruct items in the web UI: list, accept / reject, edit (a new item)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pathgen.store.instruct import NewInstructItem, append_items
from pathgen.store.models import InstructItem, InstructReview
from pathgen.web import create_app
from tests.populate import Populated, populate
from tests.webutil import add_account, csrf_token, in_db, settings_for


@pytest.fixture
async def stored(engine, db_url: str) -> tuple[str, Populated, list[int]]:
    p = await populate(engine)
    common = dict(
        run_id=p.run_id,
        tile_id=p.tile_ids[0],
        revision_id=p.summarize_ids[0],
        provider="offline",
        model="templates",
        verifier="rules",
    )
    ids = await append_items(
        engine,
        [
            NewInstructItem(
                kind="yesno",
                verify_status="passed",
                **common,
                turns=[{"question": "Necrosis?", "answer": "Yes.", "kind": "yesno"}],
            ),
            NewInstructItem(
                kind="open",
                verify_status="failed",
                verify_reason="planted <b>",
                **common,
                turns=[{"question": "Stroma?", "answer": "Loose.", "kind": "open"}],
            ),
        ],
    )
    return db_url, p, ids


@pytest.fixture
def client(stored) -> Iterator[tuple[TestClient, str, Populated, list[int]]]:
    url, p, ids = stored
    with TestClient(
        create_app(settings_for(url), reviewer="tester", allowed_hosts=["testserver"])
    ) as c:
        yield c, url, p, ids


def test_list_review_and_edit_items(client) -> None:
    c, url, p, (a, b) = client
    tile = c.get(f"/tiles/{p.tile_ids[0]}?run={p.run_id}")
    assert f"/tiles/{p.tile_ids[0]}/instruct?run={p.run_id}" in tile.text
    page = c.get(f"/tiles/{p.tile_ids[0]}/instruct?run={p.run_id}")
    assert page.status_code == 200
    assert f'data-item="{a}" data-status="passed"' in page.text
    assert f'data-item="{b}" data-status="failed"' in page.text
    assert "planted &lt;b&gt;" in page.text  # model text is escaped
    token = csrf_token(page.text)
    r = c.post(
        f"/instruct/{b}/review",
        data={"csrf_token": token, "decision": "reject", "reviewer": "ana"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith(f"?run={p.run_id}")
    unchanged = c.post(f"/instruct/{a}/edit", data={"csrf_token": token})
    assert unchanged.status_code == 400
    r = c.post(
        f"/instruct/{a}/edit",
        data={"csrf_token": token, "reviewer": "ana", "question_0": "Necrosis?", "answer_0": "No."},
        follow_redirects=False,
    )
    assert r.status_code == 303
    bad = c.post(
        f"/instruct/{a}/review",
        data={"csrf_token": "x" * 43, "decision": "accept", "reviewer": "ana"},
    )
    assert bad.status_code == 403

    async def rows(s):  # noqa: ANN001, ANN202
        items = list(await s.scalars(select(InstructItem).order_by(InstructItem.id)))
        reviews = list(await s.scalars(select(InstructReview).order_by(InstructReview.id)))
        return items, reviews

    items, reviews = in_db(url, rows)
    new = items[-1]
    assert new.parent_id == a and new.turns[0]["answer"] == "No." and new.created_by == "tester"
    assert [(r.item_id, r.decision) for r in reviews] == [(b, "reject"), (new.id, "edit")]
    assert {r.reviewer for r in reviews} == {"tester"}  # the account, not the form's name
    stale = c.post(f"/instruct/{a}/review", data={"csrf_token": token, "decision": "accept"})
    assert stale.status_code == 409 and f"replaced by #{new.id}" in stale.text
    after = c.get(f"/tiles/{p.tile_ids[0]}/instruct?run={p.run_id}").text
    assert f'data-item="{a}"' not in after and 'data-review="edit"' in after
    assert c.get(f"/tiles/{p.tile_ids[0]}/instruct").status_code in (400, 422)
    assert (
        c.post(
            "/instruct/999999/review",
            data={"csrf_token": token, "decision": "accept", "reviewer": "ana"},
        ).status_code
        == 404
    )


def test_a_viewer_cannot_review_items(stored) -> None:
    url, p, (a, _b) = stored
    add_account(url, "vic", "viewer", "a long enough password")
    with TestClient(
        create_app(settings_for(url), reviewer="tester", allowed_hosts=["testserver"])
    ) as c:
        token = csrf_token(c.get("/login").text)
        form = {"csrf_token": token, "name": "vic", "password": "a long enough password"}
        assert c.post("/login", data=form, follow_redirects=False).status_code == 303
        page = c.get(f"/tiles/{p.tile_ids[0]}/instruct?run={p.run_id}")
        assert page.status_code == 200
        r = c.post(
            f"/instruct/{a}/review",
            data={"csrf_token": csrf_token(page.text), "decision": "accept"},
        )
        assert r.status_code == 403
