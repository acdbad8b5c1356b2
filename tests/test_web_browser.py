"""End to end in headless Chromium: ``pathgen serve`` on a populated store, a curator's session.

Open the dashboard, open a tile, edit its caption, accept another, reject a third; then
the database holds the human revision and the reviews, and ``pathgen export webdataset
--only-reviewed`` contains exactly the accepted and the edited tiles.
Screenshots go to ``tmp_path/screenshots`` (and are copied to /tmp/pathgen-screenshots).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from pathgen.cli.app import app as cli_app
from pathgen.store import migrate
from pathgen.store.engine import make_engine
from pathgen.store.models import CaptionRevision, Review
from tests.populate import Populated, populate
from tests.webutil import in_db

CHROMIUM = os.environ.get("PATHGEN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS_COPY = Path("/tmp/pathgen-screenshots")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM} (install it or set PATHGEN_TEST_CHROMIUM)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _populate(url: str) -> Populated:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        return await populate(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, str, Populated]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pathgen.db'}"
    config = tmp_path / "pathgen.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return config, url, asyncio.run(_populate(url))


@pytest.fixture
def server(store: tuple[Path, str, Populated], tmp_path: Path) -> Iterator[str]:
    """``pathgen serve`` in a subprocess on a free port; yields its base URL."""
    config, _, _ = store
    port = _free_port()
    log = open(tmp_path / "server.log", "w+b")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-c", "from pathgen.cli.app import main; main()"]
    cmd += ["--config", str(config), "serve", "--port", str(port), "--reviewer", "default-user"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"pathgen serve exited early:\n{log.read().decode(errors='replace')}")
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("pathgen serve did not answer within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _exported_tiles(out: Path) -> dict[int, str]:
    """``{tile_id: caption}`` of every sample in the WebDataset shards under ``out``."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                fh = tar.extractfile(member)
                assert fh is not None
                samples.setdefault(key, {})[ext] = fh.read()
    return {json.loads(s["json"])["tile_id"]: s["txt"].decode("utf-8") for s in samples.values()}


def test_curator_session_in_chromium(
    store: tuple[Path, str, Populated], server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    config, url, p = store
    shots = tmp_path / "screenshots"
    shots.mkdir()
    t_edit, t_accept, t_reject = p.tile_ids[0], p.tile_ids[1], p.tile_ids[2]
    new_text = "Sheets of atypical epithelial cells with brisk mitoses and focal necrosis."
    dialogs: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            page.set_default_timeout(20_000)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(server + "/")
            expect(page.locator(f"#run-{p.run_id}")).to_be_visible()
            expect(
                page.locator('tr[data-stage="summarize"] td[data-col="revisions_ok"]')
            ).to_have_text(str(len(p.summarize_ids)))
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            page.click(f"#run-{p.run_id} h2 a")
            expect(page.locator("article.card")).to_have_count(len(p.tile_ids))
            # every thumbnail decoded (read from the slide on demand)
            page.wait_for_function(
                "() => [...document.querySelectorAll('article.card img')]"
                ".every(i => i.complete && i.naturalWidth === 224)"
            )
            page.screenshot(path=str(shots / "grid.png"), full_page=True)

            # Edit the first tile's caption.
            page.click(f'article.card[data-tile="{t_edit}"] .card-head a')
            expect(page.locator("h1")).to_contain_text(f"Tile #{t_edit}")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.visuals img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            page.screenshot(path=str(shots / "tile.png"), full_page=True)
            page.fill("#edit-text", new_text)
            page.click("#edit-btn")
            expect(page.locator("#final-caption")).to_have_text(new_text)
            expect(page.locator("h1 .badge")).to_have_text("edited")
            expect(page.locator("#reviews tbody tr").first).to_contain_text("default-user")
            expect(page.locator(".rev.is-final .rev-text ins").first).to_have_text("atypical")
            page.screenshot(path=str(shots / "after_edit.png"), full_page=True)

            # Accept the second tile.
            page.goto(f"{server}/tiles/{t_accept}?run={p.run_id}")
            page.click("#accept-btn")
            expect(page.locator("h1 .badge")).to_have_text("accepted")

            # Reject the third (its caption carries a <script> tag: shown as text, never run).
            page.goto(f"{server}/tiles/{t_reject}?run={p.run_id}")
            expect(page.locator("#final-caption")).to_contain_text("<script>alert('x')</script>")
            page.click("#reject-btn")
            expect(page.locator("h1 .badge")).to_have_text("rejected")
            page.screenshot(path=str(shots / "after_reject.png"), full_page=True)

            page.goto(f"{server}/runs/{p.run_id}?review=unreviewed")
            expect(page.locator("article.card")).to_have_count(len(p.tile_ids) - 3)

            # Full-text search from the run page's search box.
            page.fill('input[name="q"]', "lymphocytes")
            page.click('form.search button[type="submit"]')
            expect(page.locator("article.card")).to_have_count(2)
            expect(page.locator(".snippet mark").first).to_have_text("lymphocytes")
            page.screenshot(path=str(shots / "search.png"), full_page=True)
        finally:
            browser.close()

    SHOTS_COPY.mkdir(parents=True, exist_ok=True)
    for shot in shots.iterdir():
        shutil.copy(shot, SHOTS_COPY / shot.name)
    assert dialogs == [], f"a caption ran script in the page: {dialogs}"

    async def rows(s: AsyncSession) -> tuple[list[CaptionRevision], list[Review]]:
        human = await s.scalars(select(CaptionRevision).where(CaptionRevision.stage == "human"))
        reviews = await s.scalars(select(Review).order_by(Review.id))
        return list(human), list(reviews)

    human, reviews = in_db(url, rows)
    assert [(h.tile_id, h.text, h.parent_id, h.created_by) for h in human] == [
        (t_edit, new_text, p.summarize_ids[0], "default-user")
    ]
    assert [(r.tile_id, r.decision, r.reviewer, r.revision_id) for r in reviews] == [
        (t_edit, "edit", "default-user", human[0].id),
        (t_accept, "accept", "default-user", p.summarize_ids[1]),
        (t_reject, "reject", "default-user", p.summarize_ids[2]),
    ]
    assert all(r.created_at is not None for r in reviews)

    out = tmp_path / "shards"
    result = CliRunner().invoke(
        cli_app,
        ["--config", str(config), "export", "webdataset", p.run_id, "--out", str(out)]
        + ["--only-reviewed"],
    )
    assert result.exit_code == 0, result.output
    exported = _exported_tiles(out)
    assert set(exported) == {t_edit, t_accept}
    assert exported[t_edit] == new_text
