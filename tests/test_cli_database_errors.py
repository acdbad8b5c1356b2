"""A database pathgen cannot use gets one line saying what is wrong, not a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from pathgen.cli.app import app
from tests.dbutil import postgres_admin_url


def _status(tmp_path: Path, url: str):  # noqa: ANN202
    config = tmp_path / "pathgen.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    return CliRunner().invoke(app, ["-c", str(config), "status", "demo", "--json"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_not_running(tmp_path: Path) -> None:
    res = _status(tmp_path, f"postgresql+asyncpg://postgres@127.0.0.1:{_free_port()}/pathgen")
    assert res.exit_code == 1
    assert "cannot reach the database" in res.output and "is the server running?" in res.output
    assert "Traceback" not in res.output


def test_sqlite_folder_missing(tmp_path: Path) -> None:
    res = _status(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'p.db'}")
    assert res.exit_code == 1
    assert "cannot open the SQLite database" in res.output and "folder" in res.output


@pytest.mark.postgres
def test_missing_database_and_bad_login(tmp_path: Path) -> None:
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("PATHGEN_TEST_POSTGRES_URL is not set")
    url = make_url(admin)
    missing = url.set(database="pathgen_no_such_db").render_as_string(hide_password=False)
    res = _status(tmp_path, missing)
    assert res.exit_code == 1 and "the database does not exist" in res.output
    stranger = url.set(username="pathgen_no_such_role").render_as_string(hide_password=False)
    res = _status(tmp_path, stranger)
    assert res.exit_code == 1 and "refused the login" in res.output


@pytest.mark.parametrize("command", [["status"], ["status", "demo"], ["show", "1"]])
def test_database_without_schema(tmp_path: Path, command: list[str]) -> None:
    """A new database file (or a wrong database.url) read before `pathgen db upgrade`."""
    config = tmp_path / "pathgen.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "new.db"}"\n')
    res = CliRunner().invoke(app, ["-c", str(config), *command])
    assert res.exit_code == 1, res.output
    assert "no pathgen schema" in res.output and "pathgen db upgrade" in res.output
    assert "Traceback" not in res.output
