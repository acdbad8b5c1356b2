"""A team in headless Chromium: logins, conflicts instead of lost edits, Review next, keys, zoom.

``pathgen serve --host 0.0.0.0`` with accounts on a populated store (6 tiles plus 10
more); two browser contexts are two curators. Screenshots at 1280 × 720 go to
``tmp_path/screenshots`` (and /tmp/pathgen-screenshots).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.store import migrate
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import CaptionRevision, Review, Tile
from pathgen.store.revisions import NewRevision, insert_revisions
from pathgen.web.deepzoom import DeepZoom
from tests.populate import RUN_ID, SIZE_L0, TILE_PX, Populated, populate
from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS_COPY, _free_port
from tests.webutil import add_account, in_db

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]
PASSWORD = "pathologist-password"
LONG_MODEL = "vendor/a-very-long-model-identifier-" + "x" * 60
VIEW = {"width": 1280, "height": 720}


async def _store(url: str) -> tuple[Populated, list[int]]:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        p = await populate(engine)
        extra = []
        async with session_scope(engine) as s:
            for k in range(10):
                t = Tile(
                    slide_id=p.slide_id,
                    x=674 + SIZE_L0 * (k % 4),
                    y=2022 + SIZE_L0 * (k // 4),
                    size=SIZE_L0,
                    read_level=0,
                    mpp=0.5,
                    tile_px=TILE_PX,
                    tissue_fraction=0.9,
                )
                s.add(t)
                await s.flush()
                extra.append(t.id)
                await insert_revisions(
                    s,
                    [
                        NewRevision(
                            tile_id=t.id,
                            run_id=RUN_ID,
                            stage="summarize",
                            text=f"Extra tile {k}: stroma with scattered lymphocytes.",
                            provider="offline",
                            model=LONG_MODEL,
                        )
                    ],
                )
        return p, extra
    finally:
        await engine.dispose()


@pytest.fixture
def team(tmp_path: Path) -> Iterator[tuple[str, str, Populated, list[int]]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'team.db'}"
    p, extra = asyncio.run(_store(url))
    for name in ("ana", "ben"):
        add_account(url, name, "curator", PASSWORD)
    config = tmp_path / "pathgen.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    port = _free_port()
    log = open(tmp_path / "server.log", "w+b")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-c", "from pathgen.cli.app import main; main()", "--config"]
    cmd += [str(config), "serve", "--host", "0.0.0.0", "--port", str(port)]  # noqa: S104
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"pathgen serve exited early:\n{log.read().decode(errors='replace')}")
            try:
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("pathgen serve did not answer within 60 s")
            time.sleep(0.2)
        yield base, url, p, extra
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.seek(0)
        assert PASSWORD.encode() not in log.read(), "a password reached the server log"
        log.close()


def _login(page, base: str, name: str) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#who strong")).to_have_text(name)


def _tile_of(url: str) -> int:
    match = re.search(r"/tiles/(\d+)", url)
    assert match, url
    return int(match.group(1))


def test_team_of_curators_in_chromium(
    team: tuple[str, str, Populated, list[int]], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, url, p, extra = team
    shots = tmp_path / "screenshots"
    shots.mkdir()
    dz_levels: list[int] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            a = browser.new_context(viewport=VIEW).new_page()
            b = browser.new_context(viewport=VIEW).new_page()
            for page in (a, b):
                page.set_default_timeout(20_000)
            _login(a, base, "ana")
            _login(b, base, "ben")

            # Keyboard flow: Review next, then "a" five times; each accept opens the next.
            a.goto(f"{base}/runs/{p.run_id}")
            a.click("#review-next")
            accepted = []
            for _ in range(5):
                expect(a.locator("#accept-btn")).to_be_visible()
                accepted.append(_tile_of(a.url))
                a.keyboard.press("a")
                a.wait_for_url(lambda u, seen=accepted[-1]: f"/tiles/{seen}?" not in u)
            assert accepted == p.tile_ids[:5]
            a.keyboard.press("?")
            expect(a.locator("#keys-help")).to_be_visible()
            a.screenshot(path=str(shots / "queue_keys.png"))
            a.keyboard.press("?")

            # Review next hands ben another tile than the one ana holds now.
            held_by_a = _tile_of(a.url)
            b.goto(f"{base}/runs/{p.run_id}")
            b.click("#review-next")
            expect(b.locator("#accept-btn")).to_be_visible()
            assert _tile_of(b.url) not in (held_by_a, *accepted)

            # Two curators edit the same tile: the second gets the conflict, nothing stored.
            t = extra[5]
            for page in (a, b):
                page.goto(f"{base}/tiles/{t}?run={p.run_id}")
            a.fill("#edit-text", "Ana's correction: dense stroma, few lymphocytes.")
            a.click("#edit-btn")
            expect(a.locator("#final-caption")).to_have_text(
                "Ana's correction: dense stroma, few lymphocytes."
            )
            b.fill("#edit-text", "Ben's correction, written over text he saw.")
            b.click("#edit-btn")
            expect(b.locator("#conflict")).to_be_visible()
            expect(b.locator("#current-caption")).to_contain_text("Ana's correction")
            expect(b.locator("#current-author")).to_contain_text("ana")
            b.screenshot(path=str(shots / "conflict.png"))

            # A stale Accept: ben opens a tile, ana edits it, ben presses "a".
            t2 = extra[6]
            b.goto(f"{base}/tiles/{t2}?run={p.run_id}")
            a.goto(f"{base}/tiles/{t2}?run={p.run_id}")
            a.fill("#edit-text", "Ana rewrote this one too.")
            a.click("#edit-btn")
            expect(a.locator("#final-caption")).to_have_text("Ana rewrote this one too.")
            b.keyboard.press("a")
            expect(b.locator("#conflict")).to_be_visible()
            b.click("#conflict #accept-btn")  # review the newer text instead
            expect(b.locator("h1 .badge")).to_have_text("accepted")

            # Layout at 1280 x 720 and the zoom view, on a tile with a long model id.
            t3 = extra[7]
            a.on(
                "request",
                lambda r: (
                    dz_levels.append(int(m.group(1)))
                    if (m := re.search(r"/slide_files/(\d+)/", r.url))
                    else None
                ),
            )
            a.goto(f"{base}/tiles/{t3}?run={p.run_id}")
            expect(a.locator("#zoom[data-ready]")).to_have_count(1)
            save = a.locator("#edit-btn").bounding_box()
            assert save and save["y"] + save["height"] <= VIEW["height"], save
            model = a.locator(".review-panel .model-id").bounding_box()
            panel = a.locator(".review-panel").bounding_box()
            assert model and panel and model["x"] + model["width"] <= panel["x"] + panel["width"]
            first_levels = set(dz_levels)
            a.click("#zoom-tile")
            dz = DeepZoom(2220, 2967)
            deadline = time.monotonic() + 20
            while dz.max_level not in dz_levels and time.monotonic() < deadline:
                a.wait_for_timeout(200)
            a.screenshot(path=str(shots / "tile_zoomed_1280x720.png"))
            assert dz.max_level in dz_levels, sorted(set(dz_levels))
            assert max(first_levels) < dz.max_level
            caption = a.locator("#final-caption").bounding_box()
            assert caption and caption["y"] + caption["height"] <= VIEW["height"]
        finally:
            browser.close()
    SHOTS_COPY.mkdir(parents=True, exist_ok=True)
    for shot in shots.iterdir():
        shutil.copy(shot, SHOTS_COPY / shot.name)

    async def rows(s: AsyncSession) -> tuple[list[tuple[int, str, str]], list[tuple]]:
        human = await s.execute(
            select(CaptionRevision.tile_id, CaptionRevision.created_by, CaptionRevision.text)
            .where(CaptionRevision.stage == "human")
            .order_by(CaptionRevision.id)
        )
        reviews = await s.execute(
            select(Review.tile_id, Review.decision, Review.reviewer).order_by(Review.id)
        )
        return [tuple(r) for r in human], [tuple(r) for r in reviews]

    human, reviews = in_db(url, rows)
    assert [(tid, who) for tid, who, _ in human] == [(extra[5], "ana"), (extra[6], "ana")]
    assert not any("Ben" in text for _, _, text in human)
    assert reviews == [
        *[(tid, "accept", "ana") for tid in accepted],
        (extra[5], "edit", "ana"),
        (extra[6], "edit", "ana"),
        (extra[6], "accept", "ben"),
    ]


def test_second_review_is_blind_in_chromium(
    team: tuple[str, str, Populated, list[int]], tmp_path: Path
) -> None:
    """Ana edits a sampled tile; rob, a reviewer, takes it with "Second review next" and
    sees the model's caption, not ana's text or decision; his edit corrects that caption."""
    from playwright.sync_api import expect, sync_playwright

    from pathgen.curation.samples import request_sample

    base, url, p, extra = team
    add_account(url, "rob", "reviewer", PASSWORD)

    async def sample(s: AsyncSession) -> int:
        return await request_sample(s, p.run_id, percent=100, requested_by="ada")

    assert in_db(url, sample) == len(p.tile_ids) + len(extra)
    t = extra[8]
    model_text = "Extra tile 8: stroma with scattered lymphocytes."
    ana_text = "Ana's blind-test wording: hyalinised stroma."
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            a = browser.new_context(viewport=VIEW).new_page()
            r = browser.new_context(viewport=VIEW).new_page()
            for page in (a, r):
                page.set_default_timeout(20_000)
            _login(a, base, "ana")
            _login(r, base, "rob")
            a.goto(f"{base}/tiles/{t}?run={p.run_id}")
            a.fill("#edit-text", ana_text)
            a.click("#edit-btn")
            expect(a.locator("#final-caption")).to_have_text(ana_text)

            r.goto(f"{base}/runs/{p.run_id}")
            r.click("#second-review-next")
            expect(r.locator("#blind-review")).to_be_visible()
            assert _tile_of(r.url) == t
            expect(r.locator("#final-caption")).to_have_text(model_text)
            expect(r.locator("#edit-text")).to_have_value(model_text)
            expect(r.locator("h1 .badge")).to_have_text("unreviewed")
            html = r.content()
            assert "Ana's blind-test" not in html and "Ana&#39;s blind-test" not in html
            assert "hyalinised" not in html and ">ana<" not in html
            r.screenshot(path=str(tmp_path / "second_review_blind.png"))
            r.fill("#edit-text", "Rob's independent wording: dense stroma.")
            r.click("#edit-btn")
            expect(r.locator("#queue-done")).to_be_visible()
        finally:
            browser.close()

    async def human(s: AsyncSession) -> dict[str, int | None]:
        rows = await s.execute(
            select(CaptionRevision.created_by, CaptionRevision.parent_id).where(
                CaptionRevision.stage == "human", CaptionRevision.tile_id == t
            )
        )
        return {who: parent for who, parent in rows}

    parents = in_db(url, human)
    assert parents["rob"] == parents["ana"] is not None  # both corrected the model's caption
