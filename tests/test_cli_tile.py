"""`pathgen tile`: every slide either tiled or failed with a reason; nothing stops the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import Slide, Tile


async def _slides(db_url: str) -> dict[str, Slide]:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            return {Path(r.path).name: r for r in await s.scalars(select(Slide))}
    finally:
        await engine.dispose()


async def _tiles(db_url: str, slide_id: int) -> list[Tile]:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            return list(await s.scalars(select(Tile).where(Tile.slide_id == slide_id)))
    finally:
        await engine.dispose()


async def test_tile_command_records_every_outcome(slides_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.svs"
    fake.write_text("not a slide")
    manifest = tmp_path / "slides.csv"
    manifest.write_text(
        "path,mpp\n"
        f"{slides_dir / 'CMU-1-Small-Region.svs'},\n"
        f"{slides_dir / 'openslide-python-fixtures/small.svs'},\n"
        f"{slides_dir / 'openslide-python-fixtures/boxes.tiff'},\n"
        f"{tmp_path / 'missing.svs'},\n"
        f"{fake},\n"
    )
    db_url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    previews = tmp_path / "previews"
    args = [
        "tile",
        "--manifest",
        str(manifest),
        "--preview-dir",
        str(previews),
        "--log-format",
        "json",
    ]
    env = {"PATHGEN_DB_URL": db_url, "PATHGEN_DATA_DIR": str(tmp_path / "data")}
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 3, result.output  # failed slides park their items
    assert "slides tiled: 1, failed: 4" in result.output
    assert "finished with 4 parked item(s)" in result.output

    slides = await _slides(db_url)
    cmu = slides["CMU-1-Small-Region.svs"]
    assert cmu.status == "tiled" and cmu.tile_count > 0 and abs(cmu.mpp - 0.499) < 1e-3
    reasons = {name: s.error_reason for name, s in slides.items() if s.status == "failed"}
    assert reasons == {
        "small.svs": "too_small",
        "boxes.tiff": "no_mpp",
        "missing.svs": "missing",
        "fake.svs": "unsupported",
    }
    assert "--assume-mpp" in slides["boxes.tiff"].error
    tiles = await _tiles(db_url, cmu.id)
    assert len(tiles) == cmu.tile_count
    assert all(t.x >= 0 and t.x + t.size <= 2220 and t.y + t.size <= 2967 for t in tiles)
    assert {t.tile_px for t in tiles} == {336} and {t.mpp for t in tiles} == {0.5}
    assert len(list(previews.glob("*.png"))) == 1

    # Again with --assume-mpp: boxes.tiff now gets past µm/px (it is smaller than one tile,
    # and the reason on its row says so).
    again = await asyncio.to_thread(
        CliRunner().invoke, app, [*args, "--assume-mpp", "0.5"], env=env
    )
    assert again.exit_code == 3, again.output  # still 4 failed slides
    after = await _slides(db_url)
    assert after["boxes.tiff"].error_reason == "too_small"  # 300x250 px < one 336 px tile
    assert after["CMU-1-Small-Region.svs"].tile_count == cmu.tile_count


def test_slides_given_replace_the_config_manifest(slides_dir: Path, tmp_path: Path) -> None:
    """`pathgen tile ONE.svs` tiles that slide, not also every slide of `run.manifest`."""
    manifest = tmp_path / "slides.csv"
    manifest.write_text(f"path\n{slides_dir / 'CMU-1-Small-Region.svs'}\n{tmp_path / 'gone.svs'}\n")
    config = tmp_path / "pathgen.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "t.db"}"\n'
        f'[run]\nmanifest = "slides.csv"\ndata_dir = "data"\n'
    )
    small = slides_dir / "openslide-python-fixtures" / "small.svs"
    args = ["-c", str(config), "tile", str(small), "--log-format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output  # small.svs failed: parked
    assert "slides tiled: 0, failed: 1" in result.output
    assert "gone.svs" not in result.output


def test_bad_option_values_name_the_option(tmp_path: Path) -> None:
    env = {"PATHGEN_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 't.db'}"}
    for option, value, expected in (
        ("--mpp", "0", "--mpp: Input should be greater than 0"),
        ("--tile-size", "4", "--tile-size: Input should be greater than or equal to 8"),
        ("--assume-mpp", "-1", "--assume-mpp: Input should be greater than 0"),
    ):
        result = CliRunner().invoke(app, ["tile", "x.svs", option, value], env=env)
        assert result.exit_code == 2, (option, result.output)
        assert expected in result.output and "Traceback" not in result.output
