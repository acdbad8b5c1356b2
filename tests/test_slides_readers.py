"""Every reader on files the tests write: non-pyramidal TIFF, OME-TIFF, PNG/JPEG, DICOM
that OpenSlide refuses; each slide row names the reader that opened it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.errors import SlideError
from pathgen.slides import (
    SlideCache,
    SlideReader,
    TilingParams,
    open_slide,
    read_tile,
    thumbnail,
    tile_slide,
    write_synthetic_slide,
)
from pathgen.store.engine import make_engine, read_scope
from pathgen.store.models import Slide
from tests.slide_params import DICOM_TILES

SMALL_TILES = TilingParams(mpp=0.5, tile_size=112)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A pyramidal tiled TIFF (OpenSlide reads it) and its level-0 pixels."""
    path = write_synthetic_slide(
        tmp_path_factory.mktemp("pyr") / "pyr.tiff", 4000, 3000, mpp=0.5, seed=4
    )
    return path, tifffile.imread(path, key=0)


def _tiles(result) -> set[tuple[int, int]]:
    return {(t.x, t.y) for t in result.tiles}


def _mean_abs(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


def test_strip_tiff_tiles_like_the_same_image_written_pyramidal(pyramid, tmp_path):
    path, pixels = pyramid
    strip = tmp_path / "strips.tif"
    per_cm = 1e4 / 0.5
    tifffile.imwrite(
        strip,
        pixels,
        photometric="rgb",
        compression="zlib",
        rowsperstrip=64,
        resolution=(per_cm, per_cm),
        resolutionunit="CENTIMETER",
    )
    with pytest.raises(SlideError):  # OpenSlide alone refuses a strip TIFF
        from pathgen.slides.readers.openslide_reader import open_openslide

        open_openslide(strip)
    ref = tile_slide(path, SMALL_TILES)
    got = tile_slide(strip, SMALL_TILES, threads=2, verify=True)
    assert (ref.slide.reader, got.slide.reader) == ("openslide", "tifffile")
    assert got.slide.vendor == "tiff" and got.slide.level_count == 2  # + a reduced level
    assert (got.slide.mpp, got.slide.mpp_source) == (pytest.approx(0.5), "tiff")
    assert got.n_failed == 0 and len(ref.tiles) > 100
    assert len(_tiles(ref) ^ _tiles(got)) <= 1  # the same tiles, within one
    a, b = open_slide(path), open_slide(strip)
    for t in got.tiles[:: max(1, len(got.tiles) // 12)]:  # level 0: the same pixels
        assert _mean_abs(read_tile(a, t.x, t.y, 112, 112), read_tile(b, t.x, t.y, 112, 112)) == 0
    # Regions past the image edge are transparent, as with OpenSlide.
    edge = np.asarray(b.read_region(3990, 2990, 0, (20, 20)))
    assert edge[:10, :10, 3].min() == 255 and edge[10:, :, 3].max() == 0


def test_uncompressed_single_strip_tiff_reads_rows_directly(pyramid, tmp_path):
    _, pixels = pyramid
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, pixels[:1500, :2000], photometric="rgb")  # one strip, no compression
    reader = open_slide(raw)
    assert reader.name == "tifffile" and reader.properties["tiff.segment"] == "2000x1500"
    region = np.asarray(reader.read_region(300, 200, 0, (64, 48)))
    assert np.array_equal(region[..., :3], pixels[200:248, 300:364])
    assert thumbnail(reader, 200).size == (200, 150)


def test_ome_tiff_physical_pixel_size_and_sub_resolutions(pyramid, tmp_path):
    _, pixels = pyramid
    ome = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(ome, bigtiff=True) as tif:
        meta = {"PhysicalSizeX": 500, "PhysicalSizeXUnit": "nm"}
        meta |= {"PhysicalSizeY": 500, "PhysicalSizeYUnit": "nm"}
        opts = {"photometric": "rgb", "tile": (256, 256), "compression": "zlib"}
        tif.write(pixels, subifds=2, metadata=meta, **opts)
        tif.write(pixels[::2, ::2], subfiletype=1, **opts)
        tif.write(pixels[::4, ::4], subfiletype=1, **opts)
    reader = open_slide(ome)
    assert (reader.name, reader.vendor) == ("tifffile", "ome-tiff")
    assert reader.level_dimensions == ((4000, 3000), (2000, 1500), (1000, 750))
    r = tile_slide(ome, SMALL_TILES)
    assert (r.slide.mpp, r.slide.mpp_source) == (pytest.approx(0.5), "ome")
    assert {t.read_level for t in r.tiles} == {0}
    assert {t.read_level for t in tile_slide(ome, TilingParams(mpp=1.0, tile_size=56)).tiles} == {1}


def test_png_and_jpeg_need_a_resolution(pyramid, tmp_path):
    _, pixels = pyramid
    png, jpg = tmp_path / "field.png", tmp_path / "field.jpg"
    Image.fromarray(pixels[:1500, :2000]).save(png)
    Image.fromarray(pixels[:1500, :2000]).save(jpg, quality=92)
    with pytest.raises(SlideError) as err:
        tile_slide(png, SMALL_TILES)
    assert (err.value.reason, err.value.reader) == ("no_mpp", "pil")
    assumed = TilingParams(mpp=0.5, tile_size=112, assume_mpp=0.5)
    a, b = tile_slide(png, assumed), tile_slide(jpg, assumed)
    assert (a.slide.reader, a.slide.vendor, a.slide.mpp_source) == ("pil", "png", "assumed")
    assert b.slide.vendor == "jpeg" and len(_tiles(a) ^ _tiles(b)) <= 1 and len(a.tiles) > 20
    cache = SlideCache()
    t = a.tiles[0]
    tile = read_tile(cache.get(png), t.x, t.y, t.size_l0, t.out_px)
    assert tile.size == (112, 112) and isinstance(cache.get(png), SlideReader)


def _dicom_variants(fixtures: Path, folder: Path) -> dict[str, Path]:
    """Copies of the boxes fixture that OpenSlide refuses: no ImageType, RLE frames, a folder."""
    out = {}
    noit = folder / "noit"
    noit.mkdir()
    ds = pydicom.dcmread(fixtures / "boxes_0.dcm")
    del ds.ImageType
    ds.save_as(noit / "boxes_noit.dcm")
    out["noit"] = noit / "boxes_noit.dcm"
    rle = folder / "rle"
    rle.mkdir()
    ds = pydicom.dcmread(fixtures / "boxes_0.dcm")
    ds.decompress()
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(rle / "boxes_rle.dcm")
    out["rle"] = rle / "boxes_rle.dcm"
    series = folder / "series"
    series.mkdir()
    for f in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(fixtures / f, series / f)
    out["series"] = series
    return out


def test_dicom_that_openslide_refuses(slides_dir, tmp_path):
    fixtures = slides_dir / "openslide-python-fixtures"
    variants = _dicom_variants(fixtures, tmp_path)
    ref = open_slide(fixtures / "boxes_0.dcm")
    expected = np.asarray(read_tile(ref, 0, 0, 16, 16))
    readers = {"noit": "pydicom", "rle": "wsidicom", "series": "wsidicom"}
    for key, path in variants.items():
        reader = open_slide(path)
        assert (reader.name, reader.vendor, reader.dimensions) == (readers[key], "dicom", (16, 16))
        assert np.array_equal(np.asarray(read_tile(reader, 0, 0, 16, 16)), expected), key
        r = tile_slide(path, DICOM_TILES)
        assert (r.slide.reader, r.slide.mpp_source) == (readers[key], "dicom")
        assert r.slide.mpp == pytest.approx(0.499) and len(r.tiles) == 4
    assert ref.name == "openslide"


def test_a_file_no_reader_opens_names_every_reader(tmp_path):
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 40)
    with pytest.raises(SlideError) as err:
        open_slide(fake)
    msg = str(err.value)
    assert err.value.reason == "unsupported" and "fake.dcm" in msg
    for name in ("openslide", "wsidicom", "pydicom", "tifffile", "pil"):
        assert f"{name}: " in msg


async def test_each_slide_row_names_its_reader(slides_dir, pyramid, tmp_path):
    fixtures = slides_dir / "openslide-python-fixtures"
    variants = _dicom_variants(fixtures, tmp_path)
    png, bare = tmp_path / "field.png", tmp_path / "bare.png"
    Image.fromarray(pyramid[1][:64, :64]).save(png)
    Image.fromarray(pyramid[1][:64, :64]).save(bare)
    fake = tmp_path / "fake.svs"
    fake.write_text("not a slide")
    manifest = tmp_path / "slides.csv"
    rows = [fixtures / "boxes_0.dcm", *variants.values(), bare, fake]
    manifest.write_text("path,mpp\n" + "".join(f"{p},\n" for p in rows) + f"{png},0.499\n")
    config = tmp_path / "pathgen.toml"
    config.write_text(
        "[tiling]\nmpp = 0.499\ntile_size = 8\nmin_tissue = 0.0\n"
        "[tiling.tissue]\ndetection_mpp = 0.499\nmedian_blur = 1\nsaturation_floor = 0\n"
        "close_um = 0\nmin_object_um2 = 0\nmin_hole_um2 = 0\n"
    )
    db_url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    env = {"PATHGEN_DB_URL": db_url, "PATHGEN_DATA_DIR": str(tmp_path / "data")}
    args = ["--config", str(config), "tile", "--manifest", str(manifest), "--log-format", "json"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 3, result.output  # two slides failed: parked
    assert "slides tiled: 5, failed: 2" in result.output
    assert "pydicom 1" in result.output and "wsidicom 2" in result.output
    engine = make_engine(db_url)
    try:
        async with read_scope(engine) as s:
            slides = {Path(r.path).name: r for r in await s.scalars(select(Slide))}
    finally:
        await engine.dispose()
    assert {name: (s.reader, s.status) for name, s in slides.items()} == {
        "boxes_0.dcm": ("openslide", "tiled"),
        "boxes_noit.dcm": ("pydicom", "tiled"),
        "boxes_rle.dcm": ("wsidicom", "tiled"),
        "series": ("wsidicom", "tiled"),
        "field.png": ("pil", "tiled"),
        "bare.png": ("pil", "failed"),  # opened, then no µm/px: the reader is kept
        "fake.svs": (None, "failed"),
    }
    assert slides["field.png"].mpp_source == "manifest"
    assert slides["bare.png"].error_reason == "no_mpp"
    assert "no reader can open this file" in slides["fake.svs"].error


_WRITE_STRIPS = """
import sys, zlib
import cv2, numpy as np, tifffile
side, rows = 30000, 256


def strips():  # two tissue-coloured ellipses on a white background, strip by strip
    for y0 in range(0, side, rows):
        strip = np.empty((min(rows, side - y0), side, 3), np.uint8)
        strip[:] = (244, 243, 246)
        for cx, cy, ax, ay in ((12000, 15000, 9000, 10500), (24000, 9000, 3600, 4500)):
            cv2.ellipse(strip, (cx, cy - y0), (ax, ay), 0, 0, 360, (226, 150, 192), -1)
        yield zlib.compress(strip.tobytes(), 1)


with tifffile.TiffWriter(sys.argv[1], bigtiff=True) as tif:
    tif.write(
        strips(), shape=(side, side, 3), dtype=np.uint8, photometric="rgb",
        compression="zlib", rowsperstrip=rows, resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )
print(peak_rss())
"""

_TILE = """
import sys
from pathgen.slides import TilingParams, tile_slide
r = tile_slide(sys.argv[1], TilingParams(), threads=2, verify=True)
assert r.slide.reader == "tifffile" and r.slide.vendor == "bigtiff", r.slide
print(len(r.tiles), r.n_failed, r.slide.mpp)
print(peak_rss())
"""

# This process's peak resident memory in bytes. VmHWM, not getrusage's ru_maxrss: after
# fork + exec, Linux carries the parent's (pytest's) peak into ru_maxrss.
_PEAK_RSS = """
def peak_rss():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
"""


@pytest.mark.slow
def test_tiling_a_30000_px_strip_tiff_stays_under_1_gib(tmp_path):
    """Peak RSS of a process that writes a 30000x30000 strip BigTIFF (2.7 GB of pixels),
    then of one that tiles it and reads every kept tile: each below 1 GiB."""
    path = tmp_path / "big-strips.tif"
    wrote = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS + _WRITE_STRIPS, str(path)],
        capture_output=True,
        text=True,
    )
    assert wrote.returncode == 0, wrote.stderr
    tiled = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS + _TILE, str(path)], capture_output=True, text=True
    )
    assert tiled.returncode == 0, tiled.stderr
    counts, peak = tiled.stdout.split("\n")[:2]
    tiles, failed, mpp = counts.split()
    assert int(tiles) > 1000 and int(failed) == 0 and float(mpp) == pytest.approx(0.5)
    assert int(wrote.stdout.strip()) < 1 << 30
    assert int(peak) < 1 << 30, f"peak RSS {int(peak) / 2**20:.0f} MiB"


def test_folders_yield_flat_images_too(tmp_path):
    from pathgen.runs.manifest import discover

    for name in ("a.png", "b.JPG", "c.jpeg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert sorted(Path(e.path).name for e in discover([str(tmp_path)])) == [
        "a.png",
        "b.JPG",
        "c.jpeg",
    ]


def test_read_rgba_is_read_region_as_an_array(slides_dir, pyramid, tmp_path):
    path, pixels = pyramid
    strip = tmp_path / "strip.tif"
    tifffile.imwrite(strip, pixels[:1200, :1600], rowsperstrip=64)
    flat = tmp_path / "field.png"
    Image.fromarray(pixels[:500, :700]).save(flat)
    for file in (slides_dir / "CMU-1-Small-Region.svs", path, strip, flat):
        reader = open_slide(file)
        for level in (0, reader.level_count - 1):
            w, h = reader.level_dimensions[level]
            ds = reader.level_downsamples[level]
            # inside, and half outside (transparent there: openslide's alpha conversion)
            for x, y in ((0, 0), (round(-w * ds / 2), round(h * ds / 2))):
                size = (min(w, 300), min(h, 200))
                region = np.asarray(reader.read_region(x, y, level, size))
                assert np.array_equal(reader.read_rgba(x, y, level, size), region), file
        assert reader.read_rgba(0, 0, 0, (1, 1)).shape == (1, 1, 4)
