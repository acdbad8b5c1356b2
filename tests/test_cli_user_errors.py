"""A user's mistake ends in one line naming what is wrong and what to do, with a truthful
exit code: an output that cannot be written, a run that does not exist."""

from __future__ import annotations

from pathlib import Path

from tests.populate import RUN_ID, populate
from tests.test_export_webdataset import cli


async def test_unwritable_output_is_one_line_naming_the_path(
    engine, db_url: str, tmp_path: Path
) -> None:
    await populate(engine)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    out = blocker / "shards"
    res = await cli(db_url, "export", "webdataset", RUN_ID, "--out", str(out))
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    (line,) = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert str(out) in line and "Not a directory" in line


async def test_unknown_run_is_named_with_the_runs_there(
    engine, db_url: str, tmp_path: Path
) -> None:
    await populate(engine)
    for args in (
        ["status", "nosuch"],
        ["status", "nosuch", "--json"],
        ["retry", "nosuch"],
        ["worker", "--run", "nosuch", "--exit-when-idle"],
        ["export", "webdataset", "nosuch", "--out", str(tmp_path / "shards")],
    ):
        res = await cli(db_url, *args)
        assert res.exit_code in (1, 2), (args, res.output)
        assert f"no run 'nosuch' in this database (runs: {RUN_ID})" in res.output, args


async def test_empty_instruct_export_says_how_to_make_items(
    engine, db_url: str, tmp_path: Path
) -> None:
    await populate(engine)  # captions, but the instruct stage never ran
    res = await cli(db_url, "export", "instruct", RUN_ID, "--out", str(tmp_path / "llava"))
    assert res.exit_code == 0, res.output
    assert "exported 0 items" in res.output
    assert "[captioning.instruct] enabled = true" in res.output
    assert "--redo instruct --force" in res.output


async def test_empty_reviewed_export_says_why(engine, db_url: str, tmp_path: Path) -> None:
    await populate(engine)  # nothing reviewed
    out = tmp_path / "shards"
    res = await cli(db_url, "export", "webdataset", RUN_ID, "--out", str(out), "--only-reviewed")
    assert res.exit_code == 0, res.output
    assert "exported 0 samples" in res.output
    assert "no caption of run demo-run is accepted or edited yet" in res.output


async def test_unknown_export_format_is_a_usage_error(engine, db_url: str, tmp_path: Path) -> None:
    await populate(engine)
    for kind, out, formats in (
        ("revise-pairs", tmp_path / "p.jsonl", "openai, llava"),
        ("instruct", tmp_path / "i", "llava, llava-questions, openai, parquet"),
    ):
        res = await cli(db_url, "export", kind, RUN_ID, "--out", str(out), "--format", "csv")
        assert res.exit_code == 2, res.output
        assert f"unknown format 'csv': use one of {formats}" in res.output
        assert not out.exists()
