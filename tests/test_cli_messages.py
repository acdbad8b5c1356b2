"""What the CLI prints is the text it means: brackets in paths, messages and help are shown
as they are (rich markup never eats or chokes on them)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pathgen.cli.app import app


def test_error_with_brackets_is_printed_not_parsed(tmp_path: Path) -> None:
    folder = tmp_path / "[" / "odd]"  # the path holds "[/odd]", a closing markup tag
    folder.mkdir(parents=True)
    cfg = folder / "pathgen.toml"
    cfg.write_text("[tiling]\nmppp = 0.5\n")
    result = CliRunner().invoke(app, ["--config", str(cfg), "db", "current"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert f"{cfg}: tiling.mppp: unknown key" in result.output


def test_config_section_named_in_a_message_stays(tmp_path: Path) -> None:
    cfg = tmp_path / "pathgen.toml"
    cfg.write_text("[selection]\nllm_prompts = true\n")
    result = CliRunner().invoke(app, ["--config", str(cfg), "db", "current"])
    assert result.exit_code == 2
    assert "set [selection.llm] with provider" in result.output


def test_help_shows_config_sections() -> None:
    for command in (["export", "open-clip-model"], ["run"], ["train-clip"]):
        result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
        assert result.exit_code == 0
        assert "[model]" in result.output, (command, result.output)


def test_tile_summary_shows_a_slide_path_with_brackets(tmp_path: Path, slides_dir: Path) -> None:
    missing = tmp_path / "[" / "x]" / "[red]case.svs"
    small = slides_dir / "openslide-python-fixtures" / "small.svs"
    env = {
        "PATHGEN_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        "PATHGEN_DATA_DIR": str(tmp_path / "data"),
    }
    result = CliRunner().invoke(
        app, ["tile", str(small), str(missing), "--log-format", "json"], env=env
    )
    assert result.exit_code == 3, result.output  # both slides failed: parked
    assert f"missing {missing}: {missing}: file not found" in result.output
