"""Synthetic slides: pyramid and µm/px as OpenSlide sees them, resolution-independent
tiling, bad inputs and the many-slide stage."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pathgen.errors import SlideError
from pathgen.settings import TilingSettings
from pathgen.slides import (
    TilingParams,
    fingerprint_slide,
    open_slide,
    read_tile,
    render_preview,
    thumbnail,
    tile_slide,
    tile_slides,
    write_preview,
    write_synthetic_slide,
)

# 112 px at 0.5 µm/px = 56 µm tiles: a few hundred tiles on a 2 x 1.5 mm slide.
SMALL_TILES = TilingParams(mpp=0.5, tile_size=112)


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("synth")
    return {
        "fine": write_synthetic_slide(d / "fine.tiff", 8000, 6000, mpp=0.25, seed=1),
        "coarse": write_synthetic_slide(d / "coarse.tiff", 4000, 3000, mpp=0.5, seed=1),
        "nompp": write_synthetic_slide(d / "nompp.tiff", 2000, 1500, mpp=None, seed=2),
    }


def test_synthetic_tiff_has_pyramid_and_mpp(slides):
    reader = open_slide(slides["fine"])
    assert reader.vendor == "generic-tiff"
    assert reader.level_count == 4
    assert reader.level_downsamples == pytest.approx((1, 2, 4, 8))
    assert float(reader.properties["openslide.mpp-x"]) == pytest.approx(0.25, rel=1e-4)
    assert float(reader.properties["openslide.mpp-y"]) == pytest.approx(0.25, rel=1e-4)
    assert "openslide.mpp-x" not in open_slide(slides["nompp"]).properties
    # Content is tissue-like: some saturated pixels, mostly near-white background.
    thumb = np.asarray(thumbnail(reader, 500).convert("HSV"))
    tissue = thumb[..., 1] > 40
    assert 0.05 < tissue.mean() < 0.6


def test_synthetic_slide_is_deterministic(tmp_path, slides):
    again = write_synthetic_slide(tmp_path / "again.tiff", 2000, 1500, mpp=None, seed=2)
    other = write_synthetic_slide(tmp_path / "other.tiff", 2000, 1500, mpp=None, seed=3)
    page = tifffile.imread(again, key=1)
    assert np.array_equal(page, tifffile.imread(slides["nompp"], key=1))
    assert not np.array_equal(page, tifffile.imread(other, key=1))
    assert fingerprint_slide(again) == fingerprint_slide(slides["nompp"])
    assert fingerprint_slide(other) != fingerprint_slide(again)


def test_same_physical_area_gives_same_tiles_at_any_resolution(slides):
    fine = tile_slide(slides["fine"], SMALL_TILES)
    coarse = tile_slide(slides["coarse"], SMALL_TILES, threads=2)
    assert fine.slide.mpp == pytest.approx(0.25) and coarse.slide.mpp == pytest.approx(0.5)
    assert {t.read_level for t in fine.tiles} == {1}  # 0.5 µm/px is level 1 of a 0.25 slide
    assert {t.read_level for t in coarse.tiles} == {0}
    assert fine.grid_cells == coarse.grid_cells
    n_fine, n_coarse = len(fine.tiles), len(coarse.tiles)
    assert n_fine > 100
    assert abs(n_fine - n_coarse) <= 0.02 * max(n_fine, n_coarse)
    phys_fine = {(round(t.x * 0.25), round(t.y * 0.25)) for t in fine.tiles}
    phys_coarse = {(round(t.x * 0.5), round(t.y * 0.5)) for t in coarse.tiles}
    assert len(phys_fine & phys_coarse) >= 0.95 * max(n_fine, n_coarse)
    reader = open_slide(slides["fine"])
    t = fine.tiles[0]
    assert read_tile(reader, t.x, t.y, t.size_l0, t.out_px).size == (112, 112)


def test_default_params_on_synthetic_slide(slides, tmp_path):
    r = tile_slide(slides["fine"], TilingParams.from_settings(TilingSettings()))
    assert r.params_hash == TilingParams().params_hash()
    assert all(t.size_l0 == 672 and t.out_px == 336 for t in r.tiles)
    assert all(t.x % 672 == 0 and t.y % 672 == 0 for t in r.tiles)
    img = render_preview(r)
    assert max(img.shape[:2]) >= 768
    tile_blue = np.all(img == (30, 60, 220), axis=-1)
    assert tile_blue.sum() > 4 * len(r.tiles)  # every kept tile outlined
    assert write_preview(r, tmp_path / "sub" / "p.png").exists()


def test_no_mpp_unless_assumed(slides):
    with pytest.raises(SlideError) as err:
        tile_slide(slides["nompp"], SMALL_TILES)
    assert err.value.reason == "no_mpp" and "nompp.tiff" in str(err.value)
    params = TilingParams(mpp=0.5, tile_size=112, assume_mpp=0.25)
    r = tile_slide(slides["nompp"], params)
    assert r.slide.mpp_source == "assumed" and len(r.tiles) > 0


def test_params_hash_is_stable_and_sensitive():
    assert TilingParams().params_hash() == TilingParams().params_hash()
    assert TilingParams(min_tissue=0.6).params_hash() != TilingParams().params_hash()
    assert TilingParams(assume_mpp=0.5).params_hash() != TilingParams().params_hash()
    with pytest.raises(ValueError):
        TilingParams(min_tissue=1.5)


def _corrupt_tiles(src: Path, dst: Path, page: int, which: list[int] | None) -> None:
    """Copy ``src`` to ``dst`` with the JPEG data of some tiles of ``page`` overwritten."""
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tf:
        pg = tf.pages[page]
        spans = list(zip(pg.dataoffsets, pg.databytecounts, strict=True))
    for i, (off, count) in enumerate(spans):
        if (which is None or i in which) and count > 1000:
            data[off + 600 : off + count - 2] = b"\xff" * (count - 602)
    dst.write_bytes(data)


def test_partly_corrupt_slide_drops_unreadable_tiles(slides, tmp_path):
    good = tile_slide(slides["fine"], SMALL_TILES)
    # Level 1 (4000x3000) is stored as 8x6 TIFF tiles of 512 px: damage the one that
    # holds the most kept tiles.
    cols = -(-4000 // 512)
    counts = np.zeros(cols * -(-3000 // 512), int)
    for t in good.tiles:
        counts[(t.y // 2 // 512) * cols + (t.x // 2 // 512)] += 1
    worst = int(counts.argmax())
    bad = tmp_path / "partly.tiff"
    _corrupt_tiles(slides["fine"], bad, page=1, which=[worst])
    assert tile_slide(bad, SMALL_TILES).n_failed == 0  # no tile is decoded without verify
    r = tile_slide(bad, SMALL_TILES, threads=2, verify=True)
    assert 0 < r.n_failed < len(good.tiles) / 2
    assert len(r.tiles) + r.n_failed == len(good.tiles)
    assert not set(r.failed_tiles) & set(r.tiles)
    # Exactly the tiles whose level-1 footprint touches the damaged stored tile fail.
    bx, by = (worst % cols) * 512, (worst // cols) * 512
    touching = {
        t
        for t in good.tiles
        if t.x // 2 < bx + 512
        and bx < (t.x + t.size_l0) // 2
        and t.y // 2 < by + 512
        and by < (t.y + t.size_l0) // 2
    }
    assert set(r.failed_tiles) == touching
    reader = open_slide(bad)
    for t in r.tiles[:: max(1, len(r.tiles) // 10)]:  # kept tiles still read fine
        assert read_tile(reader, t.x, t.y, t.size_l0, t.out_px).size == (112, 112)


def test_bad_inputs_fail_clearly_and_do_not_stop_the_others(slides, tmp_path):
    text = tmp_path / "x.svs"
    text.write_text("not a slide\n")
    corrupt = tmp_path / "corrupt.tiff"
    _corrupt_tiles(slides["fine"], corrupt, page=1, which=None)
    missing = tmp_path / "missing.svs"
    inputs = [slides["fine"], missing, text, corrupt, slides["nompp"], (slides["nompp"], 0.25)]
    outcomes = {}
    for o in tile_slides(inputs, SMALL_TILES, workers=2, verify=True):
        outcomes.setdefault(o.path, []).append(o)
    by = {k: v if len(v) > 1 else v[0] for k, v in outcomes.items()}
    assert by[str(slides["fine"])].status == "tiled"
    assert len(by[str(slides["fine"])].result.tiles) > 100
    for path, reason in [(missing, "missing"), (text, "unsupported"), (corrupt, "corrupt")]:
        o = by[str(path)]
        assert (o.status, o.reason, o.result) == ("failed", reason, None)
        assert path.name in o.message
    nompp = sorted(by[str(slides["nompp"])], key=lambda o: o.status)
    assert [(o.status, o.reason) for o in nompp] == [("failed", "no_mpp"), ("tiled", None)]
    assert nompp[1].result.slide.mpp_source == "manifest"


def test_tile_slides_consumes_inputs_lazily(slides):
    pulled = 0
    lock = threading.Lock()

    def inputs():
        nonlocal pulled
        for _ in range(20):
            with lock:
                pulled += 1
            yield slides["coarse"]

    stream = tile_slides(inputs(), SMALL_TILES, workers=2)
    first = next(stream)
    assert first.status == "tiled"
    assert pulled <= 3  # at most `workers` slides in flight, plus the one being submitted
    stream.close()


def test_synth_slide_cli(tmp_path):
    import typer
    from typer.testing import CliRunner

    from pathgen.cli.synth_cmd import register

    app = typer.Typer()
    register(app)

    @app.command()
    def noop() -> None:  # a second command keeps typer's sub-command layout
        """Do nothing."""

    runner = CliRunner()
    out = tmp_path / "cli.tiff"
    ok = runner.invoke(app, ["synth-slide", str(out), "--size", "1200x900", "--no-mpp"])
    assert ok.exit_code == 0, ok.output
    reader = open_slide(out)
    assert reader.dimensions == (1200, 900) and "openslide.mpp-x" not in reader.properties
    bad = runner.invoke(app, ["synth-slide", str(out), "--size", "1200by900"])
    assert bad.exit_code == 2 and "WIDTHxHEIGHT" in bad.output
    nodir = runner.invoke(app, ["synth-slide", str(tmp_path / "no" / "x.tiff"), "--size", "64x64"])
    assert nodir.exit_code == 2 and "does not exist" in nodir.output
