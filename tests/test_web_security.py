"""Serving safely: logins and roles, the Host allow-list, CSP, cookies, passwords never in clear."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typer.testing import CliRunner

from pathgen.cli.app import app as cli_app
from pathgen.store.models import Account, Review, WebSession, utcnow
from pathgen.web import create_app
from tests.populate import Populated, populate
from tests.webutil import add_account, csrf_token, in_db, revision_shown, settings_for

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def store(engine: AsyncEngine, db_url: str) -> tuple[str, Populated]:
    return db_url, await populate(engine)


@pytest.fixture
def client(store: tuple[str, Populated]) -> Iterator[tuple[TestClient, str, Populated]]:
    url, p = store
    add_account(url, "ana", "curator", PASSWORD)
    add_account(url, "vic", "viewer", PASSWORD)
    app = create_app(settings_for(url), allowed_hosts=["testserver"], behind_https=True)
    # behind a TLS proxy: cookies are Secure, so the client must speak https to get them back
    with TestClient(app, base_url="https://testserver") as c:
        yield c, url, p


def _login(c: TestClient, name: str, password: str = PASSWORD):  # noqa: ANN202
    token = csrf_token(c.get("/login").text)
    form = {"csrf_token": token, "name": name, "password": password, "next": "/runs/x"}
    return c.post("/login", data=form, follow_redirects=False)


def test_pages_need_a_login_when_accounts_exist(
    client: tuple[TestClient, str, Populated],
) -> None:
    c, _, p = client
    r = c.get(f"/tiles/{p.tile_ids[0]}?run={p.run_id}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=%2Ftiles%2F")
    assert c.get(f"/tiles/{p.tile_ids[0]}/image.jpg", follow_redirects=False).status_code == 303
    assert c.get("/static/style.css").status_code == 200
    bad = _login(c, "ana", "wrong password")
    assert bad.status_code == 401 and "wrong name or password" in bad.text
    assert _login(c, "nobody").status_code == 401
    ok = _login(c, "ana")
    assert ok.status_code == 303 and ok.headers["location"] == "/runs/x"
    cookie = ok.headers["set-cookie"].lower()
    assert "pathgen_session=" in cookie
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    assert c.get("/").status_code == 200
    # logging out ends the session on the server, not only in this browser
    token = c.cookies.get("pathgen_session")
    html = c.get("/").text
    c.post("/logout", data={"csrf_token": csrf_token(html)}, follow_redirects=False)
    c.cookies.set("pathgen_session", token or "", domain="testserver.local")
    assert c.get("/", follow_redirects=False).status_code == 303


def test_viewers_read_but_cannot_review(client: tuple[TestClient, str, Populated]) -> None:
    c, url, p = client
    assert _login(c, "vic").status_code == 303
    html = c.get(f"/tiles/{p.tile_ids[0]}?run={p.run_id}").text
    assert 'id="accept-btn"' not in html
    form = {"csrf_token": csrf_token(html), "run_id": p.run_id, "decision": "accept"}
    form["revision_id"] = str(p.summarize_ids[0])
    r = c.post(f"/tiles/{p.tile_ids[0]}/review", data=form, follow_redirects=False)
    assert r.status_code == 403
    assert in_db(url, lambda s: s.scalar(select(Review.id).limit(1))) is None


def test_sessions_expire_and_disabled_accounts_are_out(
    client: tuple[TestClient, str, Populated],
) -> None:
    c, url, p = client
    assert _login(c, "ana").status_code == 303
    assert c.get("/", follow_redirects=False).status_code == 200

    async def expire(s: AsyncSession) -> None:
        await s.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))

    in_db(url, expire)
    assert c.get("/", follow_redirects=False).status_code == 303
    assert _login(c, "ana").status_code == 303
    runner = CliRunner()
    result = runner.invoke(cli_app, ["users", "disable", "ana"], env={"PATHGEN_DB_URL": url})
    assert result.exit_code == 0, result.output
    assert c.get("/", follow_redirects=False).status_code == 303
    assert _login(c, "ana").status_code == 401


def test_wrong_host_is_refused_and_csp_is_sent(client: tuple[TestClient, str, Populated]) -> None:
    c, _, _ = client
    r = c.get("/login", headers={"Host": "attacker.example"})
    assert r.status_code == 400
    r = c.get("/login", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 400
    r = c.get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "<script>" not in r.text and " on" not in r.text.split("<body", 1)[1].replace(
        " only", ""
    )


def test_csrf_token_of_another_browser_is_refused(
    client: tuple[TestClient, str, Populated],
) -> None:
    c, url, p = client
    assert _login(c, "ana").status_code == 303
    html = c.get(f"/tiles/{p.tile_ids[1]}?run={p.run_id}").text
    form = {"run_id": p.run_id, "decision": "accept", "revision_id": revision_shown(html)}
    assert c.post(f"/tiles/{p.tile_ids[1]}/review", data=form).status_code == 403
    foreign = {**form, "csrf_token": "A" * 43}
    assert c.post(f"/tiles/{p.tile_ids[1]}/review", data=foreign).status_code == 403
    assert in_db(url, lambda s: s.scalar(select(Review.id).limit(1))) is None


def test_password_never_stored_or_printed_in_clear(
    store: tuple[str, Populated], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    url, _ = store
    secret = "Sup3r-Secret-Passw0rd-xyz"
    env = {"PATHGEN_DB_URL": url, "PATHGEN_USER_PASSWORD": secret}
    runner = CliRunner()
    result = runner.invoke(cli_app, ["users", "add", "bea", "--role", "admin"], env=env)
    assert result.exit_code == 0, result.output
    listing = runner.invoke(cli_app, ["users", "list"], env=env)
    assert "bea" in listing.output and "admin" in listing.output
    changed = runner.invoke(cli_app, ["users", "passwd", "bea"], env=env)
    assert changed.exit_code == 0, changed.output
    stored = in_db(url, lambda s: s.scalar(select(Account.password_hash)))
    assert stored.startswith("$argon2id$") and secret not in stored
    out, err = capfd.readouterr()
    for text in (result.output, listing.output, changed.output, out, err):
        assert secret not in text
    if url.startswith("sqlite"):
        db_file = Path(url.split("///", 1)[1])
        for f in db_file.parent.glob(db_file.name + "*"):
            assert secret.encode() not in f.read_bytes()
    # the password is not an argument (it would be visible in ps and shell history)
    argv = runner.invoke(cli_app, ["users", "add", "cy", "--password", secret], env=env)
    assert argv.exit_code != 0
    prompted = runner.invoke(
        cli_app,
        ["users", "add", "eve", "--role", "viewer"],
        env={"PATHGEN_DB_URL": url},
        input=f"{secret}\n{secret}\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert secret not in prompted.output  # the prompt hides what is typed
    weak = runner.invoke(
        cli_app, ["users", "add", "dee"], env={**env, "PATHGEN_USER_PASSWORD": "short"}
    )
    assert weak.exit_code == 1 and "at least 8 characters" in weak.output


def test_serve_refuses_an_open_bind_without_accounts(store: tuple[str, Populated]) -> None:
    url, _ = store
    result = CliRunner().invoke(
        cli_app, ["serve", "--host", "0.0.0.0", "--port", "0"], env={"PATHGEN_DB_URL": url}
    )
    assert result.exit_code == 2
    assert "pathgen users add" in result.output
