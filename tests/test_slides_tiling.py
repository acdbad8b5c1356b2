"""Tiling stage on real slides: CMU-1-Small-Region.svs and the OpenSlide fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pathgen.errors import SlideError
from pathgen.slides import (
    SlideCache,
    TilingParams,
    TissueParams,
    fingerprint_slide,
    open_slide,
    read_tile,
    resolve_mpp,
    tile_slide,
    write_preview,
)
from tests.slide_params import DICOM_TILES

SLIDES = Path(__file__).resolve().parents[2] / "shared/testdata/slides"
CMU = SLIDES / "CMU-1-Small-Region.svs"
FIX = SLIDES / "openslide-python-fixtures"

pytestmark = pytest.mark.skipif(not CMU.exists(), reason=f"test slides not found at {SLIDES}")

# Parameters for the tiny fixtures (a few hundred µm at most): small tiles, fine mask.
FINE = TissueParams(detection_mpp=1.0, median_blur=1, close_um=0, min_object_um2=0, min_hole_um2=0)


def _saturation(img) -> float:
    arr = np.asarray(img.convert("HSV"))
    return float(arr[..., 1].mean())


@pytest.fixture(scope="module")
def cmu_result():
    return tile_slide(CMU, TilingParams(), threads=2)


def test_cmu_tiles_lie_on_tissue_only(cmu_result, tmp_path):
    r = cmu_result
    assert r.slide.vendor == "aperio"
    assert (r.slide.width, r.slide.height) == (2220, 2967)
    assert r.slide.mpp == pytest.approx(0.499)
    assert r.slide.mpp_source == "openslide"
    # 6x8 grid of 337 px tiles; the tissue strip (checked by eye on the preview) holds ~15.
    assert 8 <= len(r.tiles) <= 30
    assert r.grid_cells == 6 * 8 and r.n_failed == 0
    corner = 500  # the four 500x500 px corners are background on this slide
    for t in r.tiles:
        assert t.x >= 0 and t.x + t.size_l0 <= r.slide.width
        assert t.y >= 0 and t.y + t.size_l0 <= r.slide.height
        assert t.size_l0 == 337 and t.read_level == 0 and t.out_px == 336
        assert t.tissue_fraction >= 0.5
        for cx, cy in [
            (0, 0),
            (2220 - corner, 0),
            (0, 2967 - corner),
            (2220 - corner, 2967 - corner),
        ]:
            overlap_x = t.x < cx + corner and cx < t.x + t.size_l0
            overlap_y = t.y < cy + corner and cy < t.y + t.size_l0
            assert not (overlap_x and overlap_y), f"tile {t} on background corner {cx, cy}"
    out = write_preview(r, tmp_path / "cmu.png")
    assert out.stat().st_size > 1000


def test_cmu_tile_pixels_read_back_at_336(cmu_result):
    reader = open_slide(CMU)
    background = read_tile(reader, 0, 0, 337, 336)
    assert background.mode == "RGB" and background.size == (336, 336)
    for t in cmu_result.tiles[:5]:
        img = read_tile(reader, t.x, t.y, t.size_l0, t.out_px)
        assert img.mode == "RGB" and img.size == (336, 336)
        assert _saturation(img) > 2 * _saturation(background)


def test_generic_tiff_without_plausible_mpp_needs_assume_mpp():
    # boxes.tiff records 72 dpi (352.8 µm/px): not a microscope resolution, so ignored.
    with pytest.raises(SlideError) as err:
        tile_slide(FIX / "boxes.tiff", TilingParams())
    assert err.value.reason == "no_mpp"
    assert "boxes.tiff" in str(err.value) and "--assume-mpp" in str(err.value)

    params = TilingParams(mpp=0.5, tile_size=32, assume_mpp=0.5, tissue=FINE)
    r = tile_slide(FIX / "boxes.tiff", params)
    assert r.slide.mpp_source == "assumed" and r.slide.mpp == 0.5
    assert r.slide.level_count == 4 and r.slide.vendor == "generic-tiff"
    assert 5 <= len(r.tiles) < r.grid_cells - 5  # coloured boxes kept, white margins not
    reader = open_slide(FIX / "boxes.tiff")
    for t in r.tiles:
        assert _saturation(read_tile(reader, t.x, t.y, t.size_l0, t.out_px)) > 100
    assert not any(t.x < 25 and t.y < 25 for t in r.tiles)  # top-left corner is white

    coarse = tile_slide(
        FIX / "boxes.tiff", TilingParams(mpp=1.0, tile_size=16, assume_mpp=0.5, tissue=FINE)
    )
    assert {t.read_level for t in coarse.tiles} == {1}  # 1 µm/px is read from level 1

    manifest = tile_slide(FIX / "boxes.tiff", params, manifest_mpp=0.5)
    assert manifest.slide.mpp_source == "manifest"


def test_dicom_series(tmp_path):
    path = FIX / "boxes_0.dcm"
    reader = open_slide(path)
    assert reader.vendor == "dicom"
    assert resolve_mpp(reader) == (pytest.approx(0.499), "openslide")
    with pytest.raises(SlideError) as err:
        tile_slide(path, TilingParams())
    assert err.value.reason == "too_small"

    r = tile_slide(path, DICOM_TILES)
    assert r.slide.vendor == "dicom" and len(r.tiles) == 4
    assert read_tile(reader, 8, 8, 8, 8).size == (8, 8)

    # The fingerprint covers the other files of the series.
    for f in FIX.glob("boxes_*.dcm"):
        shutil.copy(f, tmp_path / f.name)
    before = fingerprint_slide(tmp_path / "boxes_0.dcm", reader.properties)
    assert before == fingerprint_slide(path, reader.properties)
    with (tmp_path / "boxes_1.dcm").open("ab") as fh:
        fh.write(b"\0\0")
    assert fingerprint_slide(tmp_path / "boxes_0.dcm", reader.properties) != before


def test_tiny_svs_is_too_small():
    with pytest.raises(SlideError) as err:
        tile_slide(FIX / "small.svs", TilingParams())
    assert err.value.reason == "too_small"
    assert "small.svs" in str(err.value) and "16x16" in str(err.value)


def test_slide_cache_reuses_and_bounds_handles(tmp_path):
    cache = SlideCache(max_open=2)
    a = cache.get(CMU)
    assert cache.get(str(CMU)) is a
    cache.get(FIX / "boxes.tiff")
    cache.get(FIX / "small.svs")
    assert len(cache) == 2 and CMU not in cache
    assert cache.get(CMU) is not a  # reopened after eviction
    assert read_tile(a, 0, 0, 100, 50).size == (50, 50)  # an evicted reader still works
    with pytest.raises(SlideError) as err:
        cache.get(tmp_path / "nope.svs")
    assert err.value.reason == "missing"


def test_slide_cache_opens_a_slide_once_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    cache = SlideCache(max_open=4)
    with ThreadPoolExecutor(8) as pool:
        readers = list(pool.map(lambda _: cache.get(CMU), range(16)))
    assert len({id(r) for r in readers}) == 1
