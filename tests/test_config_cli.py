"""Invalid configuration: one line naming the problem, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.errors import ConfigError
from pathgen.settings import load_settings


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[tiling]\nmppp = 0.5\n", "tiling.mppp: unknown key"),
        ('[tiling]\nmpp = "fast"\n', "tiling.mpp: Input should be a valid number"),
        ('[database]\nurl = "mysql://localhost/x"\n', "database.url: unsupported database URL"),
        ("[tiling\n", "not valid TOML"),
    ],
)
def test_invalid_config_one_line_exit_2(tmp_path: Path, body: str, expected: str) -> None:
    cfg = tmp_path / "pathgen.toml"
    cfg.write_text(body)
    result = CliRunner().invoke(app, ["--config", str(cfg), "db", "current"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert str(cfg) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.output


def test_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "nope.toml"), "db", "current"])
    assert result.exit_code == 2 and "file not found" in result.output


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "pathgen.toml"
    cfg.write_text('[database]\nurl = "sqlite+aiosqlite:///a.db"\n[tiling]\nmpp = 0.25\n')
    monkeypatch.setenv("PATHGEN_DB_URL", "sqlite+aiosqlite:///b.db")
    settings = load_settings(cfg)
    assert settings.database.url.endswith("b.db") and settings.tiling.mpp == 0.25


def test_bad_env_override_names_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATHGEN_DB_URL", "oracle://x")
    with pytest.raises(ConfigError, match="database.url"):
        load_settings()


def test_secrets_are_not_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "pathgen.toml"
    cfg.write_text('[captioning.describe]\napi_key = "sk-123"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(cfg)


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "db" in result.output and "version" in result.output


def test_bad_env_override_blames_the_variable_not_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "pathgen.toml"
    cfg.write_text('[database]\nurl = "sqlite+aiosqlite:///ok.db"\n')
    monkeypatch.setenv("PATHGEN_DB_URL", "mysql://x")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert str(err.value).startswith("environment variable PATHGEN_DB_URL: database.url: ")
