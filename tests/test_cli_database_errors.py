"""A database pathgen cannot use gets one line saying what is wrong, not a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from pathgen.cli.app import app
from tests.dbutil import postgres_admin_url

PASSWORD = {"PATHGEN_USER_PASSWORD": "a long enough password"}


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
    config = tmp_path / "pathgen.toml"
    url = f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'p.db'}"
    config.write_text(f'[database]\nurl = "{url}"\n')
    res = CliRunner().invoke(app, ["-c", str(config), "users", "add", "ann"], env=PASSWORD)
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
    (tmp_path / "new.db").touch()
    res = CliRunner().invoke(app, ["-c", str(config), *command])
    assert res.exit_code == 1, res.output
    assert "no pathgen schema" in res.output and "pathgen db upgrade" in res.output
    assert "Traceback" not in res.output


READ_ONLY_COMMANDS = [
    ["status"],
    ["status", "demo", "--json"],
    ["retry", "demo"],
    ["show", "1"],
    ["captions", "search", "tumour"],
    ["search-tiles", "demo", "--text", "tumour"],
    ["zeroshot", "demo", "--classes", "tumour,stroma"],
    ["export", "captions", "demo", "--out", "out/c.parquet"],
    ["export", "webdataset", "demo", "--out", "out/wds"],
    ["export", "revise-pairs", "demo", "--out", "out/p.jsonl"],
    ["export", "instruct", "demo", "--out", "out/instruct"],
    ["export", "open-clip-model", "--run", "demo", "--out", "out/model"],
    ["eval", "demo", "--out", "out/eval"],
    ["train-clip", "demo", "--out", "out/train"],
    ["batch", "export", "demo", "--stage", "describe", "--out", "out/b.jsonl"],
    ["users", "list"],
    ["users", "disable", "ann"],
    ["db", "current"],
    ["serve"],
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_read_only_command_creates_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """In a folder without pathgen.db (and no pathgen.toml) a command that only uses a
    database says which file it looked for and what to do, and leaves no empty file."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, command)
    assert res.exit_code == 2, res.output
    assert str(tmp_path / "pathgen.db") in res.output.replace("\n", "")
    assert "pathgen run" in res.output and "--config" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "pathgen.db").exists()
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_creates_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pathgen.db").stat().st_size > 0
