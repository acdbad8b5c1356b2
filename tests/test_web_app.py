"""Web UI unit tests with FastAPI's TestClient on a populated store (SQLite and Postgres)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pathgen.slides import open_slide, read_tile
from pathgen.store.engine import session_scope
from pathgen.store.models import CaptionRevision, CurationTile, Review, Slide, WorkItem
from pathgen.web import create_app
from pathgen.web import pages as web_pages
from pathgen.web.diffs import word_diff
from tests.populate import Populated, populate
from tests.webutil import (
    add_account,
    card_ids,
    csrf_token,
    in_db,
    revision_shown,
    settings_for,
    stage_cell,
    stat,
)


@pytest.fixture
async def populated(engine: AsyncEngine, db_url: str) -> tuple[str, Populated]:
    p = await populate(engine)
    async with session_scope(engine) as s:
        # Queue state for the dashboard: describe 3 done, 1 failed, 2 queued.
        for i, status in enumerate(["done"] * 3 + ["failed"] + ["queued"] * 2):
            s.add(WorkItem(run_id=p.run_id, stage="describe", key=f"k{i}", status=status))
    return db_url, p


@pytest.fixture
def client(populated: tuple[str, Populated]) -> Iterator[tuple[TestClient, str, Populated]]:
    url, p = populated
    app = create_app(settings_for(url), reviewer="tester", allowed_hosts=["testserver"])
    with TestClient(app) as c:
        yield c, url, p


def test_dashboard_lists_run_with_counts(client: tuple[TestClient, str, Populated]) -> None:
    c, _, p = client
    r = c.get("/")
    assert r.status_code == 200
    html = r.text
    assert f'href="/runs/{p.run_id}"' in html
    assert stage_cell(html, "describe", "done") == "3"
    assert stage_cell(html, "describe", "failed") == "1"
    assert stage_cell(html, "describe", "queued") == "2"
    assert stage_cell(html, "summarize", "revisions_ok") == str(len(p.summarize_ids))
    # every tile has describe + revise + summarize; tile 0 also degrade + a second revise
    assert stage_cell(html, "revise", "revisions_ok") == str(len(p.tile_ids) + 1)
    assert stage_cell(html, "degrade", "revisions_ok") == "1"
    n_revisions = 3 * len(p.tile_ids) + 2
    assert stage_cell(html, "describe", "input_tokens") == str(50 * len(p.tile_ids))
    assert stat(html, "tokens") == f"{50 * n_revisions:,} / {30 * n_revisions:,}"
    assert stat(html, "captioned") == str(len(p.tile_ids))
    assert stat(html, "tiles") == str(len(p.tile_ids))
    assert stat(html, "unreviewed") == str(len(p.tile_ids))
    assert stat(html, "slides_failed") == "0"


def test_model_caption_is_rendered_as_text(client: tuple[TestClient, str, Populated]) -> None:
    c, _, p = client
    script_tile = p.tile_ids[2]
    for path in (f"/tiles/{script_tile}", f"/runs/{p.run_id}", f"/runs/{p.run_id}/search?q=markup"):
        html = c.get(path).text
        assert "&lt;script&gt;alert(" in html, path
        assert "<script>alert" not in html, path
        # the only script elements on any page are our own static files (the CSP allows no other)
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts and all(
            re.fullmatch(r'<script src="/static/[\w./-]+" defer>', t) for t in scripts
        )
        assert html.count("<script") == len(scripts) and " onchange=" not in html


def test_word_diff_escapes_words_and_marks_changes() -> None:
    html = str(word_diff("a <b>focal</b> necrosis", "a <b>no</b> necrosis <i>x</i>"))
    assert "<del>&lt;b&gt;focal&lt;/b&gt;</del><ins>&lt;b&gt;no&lt;/b&gt;</ins>" in html
    assert "<ins>&lt;i&gt;x&lt;/i&gt;</ins>" in html
    assert "<b>" not in html and "<i>" not in html


def test_unknown_ids_give_404_pages(client: tuple[TestClient, str, Populated]) -> None:
    c, _, p = client
    missing = max(p.tile_ids) + 1000
    r = c.get(f"/tiles/{missing}")
    assert r.status_code == 404
    assert f"tile {missing} does not exist" in r.text
    assert c.get(f"/tiles/{missing}/image.jpg").status_code == 404
    r = c.get("/runs/no-such-run")
    assert r.status_code == 404
    assert "run &#39;no-such-run&#39; does not exist" in r.text
    assert c.get("/runs/no-such-run/search?q=x").status_code == 404
    assert c.get(f"/tiles/{p.tile_ids[0]}?run=no-such-run").status_code == 404


@pytest.mark.parametrize("tile", ["99999999999999999999999", "2147483648", "0", "-1", "abc"])
def test_ids_no_row_can_have_give_404(client: tuple[TestClient, str, Populated], tile: str) -> None:
    """Ids beyond what the database holds name nothing (they used to reach it: HTTP 500)."""
    c, _, p = client
    for path in (
        f"/tiles/{tile}",
        f"/tiles/{tile}/image.jpg",
        f"/tiles/{tile}/context.jpg",
        f"/slides/{tile}/thumbnail.jpg",
    ):
        r = c.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "Not found" in r.text
    form = {"run_id": p.run_id, "decision": "accept", "revision_id": "1"}
    r = _post(c, f"/tiles/{tile}/review", form)
    assert r.status_code == 404
    # an oversized revision id in a form names nothing either (no database error)
    token = csrf_token(c.get(f"/tiles/{p.tile_ids[0]}").text)
    big = {**form, "csrf_token": token, "revision_id": "99999999999999999999999"}
    assert _post(c, f"/tiles/{p.tile_ids[0]}/review", big).status_code in (400, 404)


def _post(c: TestClient, path: str, data: dict[str, str]):  # noqa: ANN202
    return c.post(path, data=data, follow_redirects=False)


def _login(c: TestClient, name: str, password: str) -> None:
    token = csrf_token(c.get("/login").text)
    form = {"csrf_token": token, "name": name, "password": password, "next": "/"}
    r = _post(c, "/login", form)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"


def _shown(c: TestClient, tile_id: int, run_id: str) -> dict[str, str]:
    """The hidden fields of the tile page's review form."""
    html = c.get(f"/tiles/{tile_id}?run={run_id}").text
    return {"csrf_token": csrf_token(html), "run_id": run_id, "revision_id": revision_shown(html)}


def test_accept_reject_edit_record_rows(client: tuple[TestClient, str, Populated]) -> None:
    c, url, p = client
    add_account(url, "ana", "curator", "ana-secret-pw")
    _login(c, "ana", "ana-secret-pw")
    t_edit, t_accept, t_reject = p.tile_ids[0], p.tile_ids[1], p.tile_ids[2]
    page = c.get(f"/tiles/{t_edit}?run={p.run_id}")
    assert 'name="reviewer"' not in page.text  # the reviewer is the account, not free text
    assert "signed in as <strong>ana</strong>" in page.text
    before = datetime.now(UTC)
    new_text = "Sheets of atypical epithelial cells with mitoses and <b>focal</b> necrosis."
    # a reviewer field sent anyway is ignored
    form = {**_shown(c, t_edit, p.run_id), "text": new_text, "reviewer": "mallory"}
    r = _post(c, f"/tiles/{t_edit}/edit", form)
    assert r.status_code == 303
    assert r.headers["location"] == f"/tiles/{t_edit}?run={p.run_id}"
    for tile_id, decision in ((t_accept, "accept"), (t_reject, "reject")):
        r = _post(
            c, f"/tiles/{tile_id}/review", {**_shown(c, tile_id, p.run_id), "decision": decision}
        )
        assert r.status_code == 303
    after = datetime.now(UTC)

    async def rows(s: AsyncSession) -> tuple[list[CaptionRevision], list[Review]]:
        human = await s.scalars(select(CaptionRevision).where(CaptionRevision.stage == "human"))
        reviews = await s.scalars(select(Review).order_by(Review.id))
        return list(human), list(reviews)

    human, reviews = in_db(url, rows)
    assert len(human) == 1
    h = human[0]
    assert (h.tile_id, h.run_id, h.text, h.created_by) == (t_edit, p.run_id, new_text, "ana")
    assert h.parent_id == p.summarize_ids[0]
    got = [(r.tile_id, r.decision, r.reviewer, r.revision_id) for r in reviews]
    assert got == [
        (t_edit, "edit", "ana", h.id),
        (t_accept, "accept", "ana", p.summarize_ids[1]),
        (t_reject, "reject", "ana", p.summarize_ids[2]),
    ]
    assert all(before <= r.created_at <= after for r in reviews)

    # The tile page now shows the human revision as final, its diff and the review.
    html = c.get(f"/tiles/{t_edit}?run={p.run_id}").text
    assert "<ins>atypical</ins>" in html and "<del>pleomorphic</del>" in html
    assert "&lt;b&gt;focal&lt;/b&gt;" in html and "<b>focal" not in html
    assert 'class="badge badge-edit"' in html
    # Filters on the grid follow the review state.
    assert card_ids(c.get(f"/runs/{p.run_id}?review=accept").text) == [t_accept]
    assert card_ids(c.get(f"/runs/{p.run_id}?review=reject").text) == [t_reject]
    assert card_ids(c.get(f"/runs/{p.run_id}?review=edit").text) == [t_edit]
    assert card_ids(c.get(f"/runs/{p.run_id}?review=unreviewed").text) == p.tile_ids[3:]
    dash = c.get("/").text
    assert (stat(dash, "accepted"), stat(dash, "edited"), stat(dash, "rejected")) == ("1", "1", "1")
    assert stat(dash, "unreviewed") == str(len(p.tile_ids) - 3)


def test_stale_forms_get_a_conflict_and_store_nothing(
    client: tuple[TestClient, str, Populated],
) -> None:
    """A opens tile 9, B edits it, then A's edit or Accept of the old text answers 409."""
    c, url, p = client
    tid = p.tile_ids[4]
    shown_to_a = _shown(c, tid, p.run_id)
    b_text = "Nests of tumour cells in a desmoplastic stroma, written by B."
    r = _post(c, f"/tiles/{tid}/edit", {**_shown(c, tid, p.run_id), "text": b_text})
    assert r.status_code == 303
    a_text = "Edit by A of the text A saw."
    r = _post(c, f"/tiles/{tid}/edit", {**shown_to_a, "text": a_text})
    assert r.status_code == 409
    assert 'id="conflict"' in r.text
    assert b_text in r.text and a_text in r.text  # the newer text, and A's edit kept for A
    assert "written by tester" in r.text
    # the conflict page offers a form for the newer revision
    newer = revision_shown(r.text)
    assert newer != shown_to_a["revision_id"]
    r = _post(c, f"/tiles/{tid}/review", {**shown_to_a, "decision": "accept"})
    assert r.status_code == 409

    async def rows(s: AsyncSession) -> tuple[list[str], list[tuple[str, int | None]]]:
        human = await s.scalars(
            select(CaptionRevision.text).where(
                CaptionRevision.tile_id == tid, CaptionRevision.stage == "human"
            )
        )
        reviews = await s.execute(
            select(Review.decision, Review.revision_id).where(Review.tile_id == tid)
        )
        return list(human), [tuple(r) for r in reviews]

    human, reviews = in_db(url, rows)
    assert human == [b_text]
    assert reviews == [("edit", int(newer))]
    # reviewing the newer revision from the conflict page works
    form = {**shown_to_a, "revision_id": newer, "decision": "accept"}
    assert _post(c, f"/tiles/{tid}/review", form).status_code == 303


def test_empty_or_unchanged_edit_is_refused(client: tuple[TestClient, str, Populated]) -> None:
    c, url, p = client
    tid = p.tile_ids[3]
    base = _shown(c, tid, p.run_id)
    assert _post(c, f"/tiles/{tid}/edit", {**base, "text": "   "}).status_code == 400
    r = c.get(f"/tiles/{tid}")
    current = r.text.split('id="edit-text"', 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]
    unchanged = {**base, "text": current.replace("&#39;", "'")}
    assert _post(c, f"/tiles/{tid}/edit", unchanged).status_code == 400
    assert in_db(url, lambda s: s.scalar(select(Review.id).limit(1))) is None
    assert (
        in_db(
            url,
            lambda s: s.scalar(select(CaptionRevision.id).where(CaptionRevision.stage == "human")),
        )
        is None
    )


def test_image_endpoint_returns_the_tile_as_jpeg(
    client: tuple[TestClient, str, Populated],
) -> None:
    c, url, p = client
    tid = p.tile_ids[0]
    r = c.get(f"/tiles/{tid}/image.jpg?size=336")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"]
    img = Image.open(io.BytesIO(r.content))
    assert (img.format, img.size, img.mode) == ("JPEG", (336, 336), "RGB")
    # Same pixels as reading the tile directly (up to JPEG loss), not another region.
    slide = in_db(url, lambda s: s.get(Slide, p.slide_id))
    from tests.populate import ORIGINS, SIZE_L0

    with open_slide(slide.path) as reader:
        want = np.asarray(read_tile(reader, *ORIGINS[0], SIZE_L0, 336), dtype=np.float32)
        other = np.asarray(read_tile(reader, *ORIGINS[4], SIZE_L0, 336), dtype=np.float32)
    got = np.asarray(img, dtype=np.float32)
    assert np.abs(got - want).mean() < 4
    assert np.abs(got - other).mean() > 4 * np.abs(got - want).mean()
    small = Image.open(io.BytesIO(c.get(f"/tiles/{tid}/image.jpg?size=96").content))
    assert small.size == (96, 96)
    ctx = Image.open(io.BytesIO(c.get(f"/tiles/{tid}/context.jpg?size=252").content))
    assert ctx.size == (252, 252)
    thumb = Image.open(io.BytesIO(c.get(f"/slides/{p.slide_id}/thumbnail.jpg?size=200").content))
    assert max(thumb.size) == 200


def test_post_without_valid_csrf_token_is_refused(
    client: tuple[TestClient, str, Populated],
) -> None:
    c, url, p = client
    tid = p.tile_ids[1]
    html = c.get(f"/tiles/{tid}").text
    token = csrf_token(html)
    form = {"run_id": p.run_id, "decision": "accept", "revision_id": revision_shown(html)}
    assert _post(c, f"/tiles/{tid}/review", form).status_code == 403
    bad = {**form, "csrf_token": "x" * 43}
    assert _post(c, f"/tiles/{tid}/review", bad).status_code == 403
    good = {**form, "csrf_token": token}
    r = c.post(
        f"/tiles/{tid}/review",
        data=good,
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    r = c.post(
        f"/tiles/{tid}/review",
        data=good,
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    # A fresh client (no cookie) replaying someone's token is refused too.
    saved = dict(c.cookies)
    c.cookies.clear()
    assert _post(c, f"/tiles/{tid}/edit", {**good, "text": "x"}).status_code == 403
    c.cookies.clear()
    c.cookies.update(saved)
    assert in_db(url, lambda s: s.scalar(select(Review.id).limit(1))) is None
    # ... and the genuine form post works.
    assert _post(c, f"/tiles/{tid}/review", good).status_code == 303
    assert in_db(url, lambda s: s.scalar(select(Review.decision))) == "accept"


def test_deep_zoom_serves_the_slide_up_to_native_resolution(
    client: tuple[TestClient, str, Populated],
) -> None:
    from pathgen.web.deepzoom import DeepZoom

    c, url, p = client
    slide = in_db(url, lambda s: s.get(Slide, p.slide_id))
    xml = c.get(f"/slides/{p.slide_id}/slide.dzi")
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/xml")
    assert f'<Size Width="{slide.width}" Height="{slide.height}"/>' in xml.text
    dz = DeepZoom(slide.width, slide.height)
    # the native level's tile holding the first tile's origin has the same pixels
    from tests.populate import ORIGINS

    x, y = ORIGINS[0]
    col, row = x // dz.tile, y // dz.tile
    r = c.get(f"/slides/{p.slide_id}/slide_files/{dz.max_level}/{col}_{row}.jpeg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.float32)
    bx, by, bw, bh = dz.tile_box(dz.max_level, col, row)
    with open_slide(slide.path) as reader:
        want = reader.read_region(bx, by, 0, (bw, bh)).convert("RGB")
    assert got.shape == (bh, bw, 3)
    assert np.abs(got - np.asarray(want, dtype=np.float32)).mean() < 4
    top = Image.open(io.BytesIO(c.get(f"/slides/{p.slide_id}/slide_files/0/0_0.jpeg").content))
    assert top.size == (1, 1)
    cols, rows = dz.grid(dz.max_level)
    for bad in (f"{dz.max_level + 1}/0_0", f"{dz.max_level}/{cols}_0", "99999999999/0_0"):
        assert c.get(f"/slides/{p.slide_id}/slide_files/{bad}.jpeg").status_code == 404, bad
    assert c.get("/slides/99999999999/slide.dzi").status_code == 404
    page = c.get(f"/tiles/{p.tile_ids[0]}?run={p.run_id}").text
    assert f'data-dzi="/slides/{p.slide_id}/slide.dzi"' in page


def test_missing_slide_renders_placeholder(
    client: tuple[TestClient, str, Populated], tmp_path: Path
) -> None:
    c, url, p = client
    gone = tmp_path / "moved-away.svs"

    async def move(s: AsyncSession) -> None:
        await s.execute(update(Slide).where(Slide.id == p.slide_id).values(path=str(gone)))

    in_db(url, move)
    r = c.get(f"/tiles/{p.tile_ids[0]}")
    assert r.status_code == 200
    assert 'id="slide-missing"' in r.text and str(gone) in r.text
    img = c.get(f"/tiles/{p.tile_ids[0]}/image.jpg?size=336")
    assert img.status_code == 200
    assert img.headers["x-pathgen-placeholder"] == "missing"
    assert img.headers["cache-control"] == "no-store"
    assert Image.open(io.BytesIO(img.content)).size == (336, 336)
    assert "slide missing" in c.get(f"/runs/{p.run_id}").text


def test_text_search_marks_matches(client: tuple[TestClient, str, Populated]) -> None:
    c, _, p = client
    r = c.get(f"/runs/{p.run_id}/search", params={"q": "lymphocytes", "mode": "text"})
    assert r.status_code == 200
    ids = card_ids(r.text)
    # summaries 1 and 5 mention lymphocytes
    assert sorted(ids) == [p.tile_ids[1], p.tile_ids[5]]
    assert "<mark>lymphocytes</mark>" in r.text
    nothing = c.get(f"/runs/{p.run_id}/search", params={"q": "xylophone"})
    assert card_ids(nothing.text) == []
    assert c.get(f"/runs/{p.run_id}/search", params={"q": "x", "mode": "bogus"}).status_code == 400
    # query syntax the search does not speak is explained, not silently empty
    for q, said in (('"', "no words"), ("NEAR(lymphocytes", "ignored ("), ("lymph*", "ignored *")):
        r = c.get(f"/runs/{p.run_id}/search", params={"q": q})
        assert 'id="query-notice"' in r.text and said in r.text, q
    plain = c.get(f"/runs/{p.run_id}/search", params={"q": "lymphocytes"}).text
    assert 'id="query-notice"' not in plain


def _link(html: str, link_id: str) -> str:
    match = re.search(rf'href="([^"]+)" id="{link_id}"', html)
    assert match, f"page has no link {link_id}"
    return match.group(1).replace("&amp;", "&")


def test_grid_pages_by_cursor_with_jump_filters_and_sorts(
    client: tuple[TestClient, str, Populated], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, url, p = client
    monkeypatch.setattr(web_pages, "PER_PAGE", 4)
    base = f"/runs/{p.run_id}"
    first = c.get(base).text
    assert card_ids(first) == p.tile_ids[:4]
    assert "tiles 1–4 of 6" in first
    second = c.get(_link(first, "next-page")).text
    assert card_ids(second) == p.tile_ids[4:]
    assert "tiles 5–6 of 6" in second
    assert 'id="next-page"' not in second
    assert card_ids(c.get(_link(second, "prev-page")).text) == p.tile_ids[:4]
    last = c.get(_link(first, "last-page")).text
    assert card_ids(last) == p.tile_ids[2:]
    assert "tiles 3–6 of 6" in last
    jump = c.get(base, params={"at": 3}).text
    assert card_ids(jump) == p.tile_ids[2:6]
    past = c.get(base, params={"at": 99})
    assert past.status_code == 200 and 'id="past-end"' in past.text
    assert card_ids(c.get(base, params={"sort": "-id"}).text) == p.tile_ids[::-1][:4]
    # filters on indexed columns of the curation index

    async def scores(s: AsyncSession) -> None:
        for n, tid in enumerate(p.tile_ids):
            await s.execute(
                update(CurationTile)
                .where(CurationTile.tile_id == tid)
                .values(score=0.1 * n, organ="lung" if n % 2 else "breast")
            )

    in_db(url, scores)
    ranged = c.get(base, params={"score_min": "0.15", "score_max": "0.45", "sort": "-score"})
    assert card_ids(ranged.text) == [p.tile_ids[4], p.tile_ids[3], p.tile_ids[2]]
    assert card_ids(c.get(base, params={"organ": "lung"}).text) == p.tile_ids[1::2]
    assert (
        card_ids(c.get(base, params={"slide": p.slide_id, "stage": "summarize"}).text)
        == (p.tile_ids[:4])
    )
    assert card_ids(c.get(base, params={"reviewer": "nobody"}).text) == []
    assert c.get(base, params={"review": "bogus"}).status_code == 400
    assert c.get(base, params={"sort": "caption"}).status_code == 400
    assert c.get(base, params={"after": "not-a-key"}).status_code == 400
    assert c.get(base, params={"score_min": "high"}).status_code == 400
    assert c.get(base, params={"slide": "99999999999999999999"}).status_code == 400


def test_serve_refuses_a_database_without_schema(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pathgen.cli.app import app

    config = tmp_path / "pathgen.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "empty.db"}"\n')
    (tmp_path / "empty.db").touch()
    result = CliRunner().invoke(app, ["--config", str(config), "serve", "--port", "0"])
    assert result.exit_code == 1
    assert "run `pathgen db upgrade`" in result.output
