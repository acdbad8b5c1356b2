"""Pure parts of the slides package: µm/px resolution order, grid rounding, tissue
segmentation and the fingerprint."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pathgen.errors import SlideError
from pathgen.settings import TissueSettings
from pathgen.slides import TissueParams, fingerprint_slide, resolve_mpp
from pathgen.slides.grid import axis_starts
from pathgen.slides.readers.openslide_reader import parse_resolutions
from pathgen.slides.tissue import _drop_small, _median_above, segment_tissue


def _reader(**props: str) -> SimpleNamespace:
    """A reader with these OpenSlide properties, resolutions parsed as the OpenSlide reader does."""
    properties = {f"openslide.{k}": v for k, v in props.items()}
    return SimpleNamespace(
        path="s.svs", properties=properties, resolutions=parse_resolutions(properties)
    )


def test_mpp_resolution_order(caplog):
    both = {"mpp-x": "0.2522", "mpp-y": "0.2528", "objective-power": "20"}
    mpp, source = resolve_mpp(_reader(**both), assume_mpp=1.0)
    assert (mpp, source) == (pytest.approx(0.2525), "openslide")
    assert resolve_mpp(_reader(**{"mpp-y": "0.5"})) == (0.5, "openslide")
    # the operator's manifest value wins over the header, with a warning when they disagree
    assert resolve_mpp(_reader(**both), manifest_mpp=0.26) == (0.26, "manifest")
    assert not caplog.records
    assert resolve_mpp(_reader(**both), manifest_mpp=0.5) == (0.5, "manifest")
    assert "s.svs: the manifest's mpp 0.5 overrides the 0.2525" in caplog.text
    assert resolve_mpp(_reader(**{"objective-power": "40"}), 0.3) == (0.3, "manifest")
    assert resolve_mpp(_reader(**{"objective-power": "40"})) == (0.25, "objective_power")
    assert resolve_mpp(_reader(**{"objective-power": "20"})) == (0.5, "objective_power")
    assert resolve_mpp(_reader(), manifest_mpp=0.3, assume_mpp=1.0) == (0.3, "manifest")
    assert resolve_mpp(_reader(), assume_mpp=1.0) == (1.0, "assumed")
    # 72 dpi from an image editor is not a scan resolution
    assert resolve_mpp(_reader(**{"mpp-x": "352.7778"}), assume_mpp=1.0) == (1.0, "assumed")
    with pytest.raises(SlideError) as err:
        resolve_mpp(_reader(**{"mpp-x": "0", "objective-power": "bogus"}))
    assert err.value.reason == "no_mpp" and "--assume-mpp" in str(err.value)
    with pytest.raises(SlideError, match="non-square"):
        resolve_mpp(_reader(**{"mpp-x": "0.25", "mpp-y": "0.5"}))


@pytest.mark.parametrize("extent_um", [2000.0, 2100.0, 10_037.0, 333.0])
def test_grid_count_depends_on_physical_extent_only(extent_um):
    counts = set()
    for mpp in (0.2435, 0.25, 0.2631, 0.499, 0.5):
        step = 336 * 0.5 / mpp
        extent = round(extent_um / mpp)
        starts = axis_starts(7, extent, step)
        assert np.all(starts >= 7) and np.all(starts + round(step) <= 7 + extent)
        assert np.all(np.diff(starts) >= round(step) - 1)
        counts.add(len(starts))
    assert len(counts) == 1


def _slide_like(size: int = 400) -> np.ndarray:
    img = np.full((size, size, 3), 242, np.uint8)
    img[100:300, 100:300] = (220, 140, 190)  # tissue, 200x200 px
    img[180:190, 180:190] = 242  # small hole
    img[20:23, 350:353] = (90, 50, 140)  # speck of dust
    return img


def test_segment_tissue_fills_small_holes_and_drops_small_objects():
    params = TissueParams.from_settings(TissueSettings())
    mask, threshold = segment_tissue(_slide_like(), 8.0, params)  # 1.6 x 1.6 mm square
    assert threshold >= params.saturation_floor
    assert mask[200, 200] == 1 and mask[185, 185] == 1  # hole of 80x80 µm filled
    assert mask[21, 351] == 0  # 24 µm speck removed
    assert mask[50, 50] == 0 and mask[350, 350] == 0
    assert abs(int(mask.sum()) - 200 * 200) < 0.05 * 200 * 200


def test_segment_tissue_keeps_blank_slide_empty():
    blank = np.full((200, 200, 3), 240, np.uint8)
    blank[..., 2] = 236  # faint tint below the saturation floor
    mask, _ = segment_tissue(blank, 8.0, TissueParams())
    assert not mask.any()


def test_fingerprint_sees_head_tail_and_size(tmp_path):
    data = bytes(range(256)) * 20_000  # ~5 MiB
    a, b = tmp_path / "a.tiff", tmp_path / "b.tiff"
    a.write_bytes(data)
    b.write_bytes(data)
    assert fingerprint_slide(a) == fingerprint_slide(b)  # name does not matter
    for pos in (10, len(data) - 10):
        changed = bytearray(data)
        changed[pos] ^= 0xFF
        b.write_bytes(changed)
        assert fingerprint_slide(b) != fingerprint_slide(a)
    b.write_bytes(data + b"\0")
    assert fingerprint_slide(b) != fingerprint_slide(a)
    props = {"openslide.quickhash-1": "x"}
    assert fingerprint_slide(a, props) != fingerprint_slide(a)


@pytest.mark.parametrize("k", [7, 9, 15])
def test_wide_median_mask_is_exactly_the_median_then_threshold(k: int) -> None:
    rng = np.random.default_rng(k)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (203, 311), dtype=np.uint8), (0, 0), 3)
    noisy = np.clip(smooth.astype(int) + rng.integers(-40, 41, smooth.shape), 0, 255)
    image = noisy.astype(np.uint8)
    for threshold in (20, int(np.median(image)), 200):
        expected = (cv2.medianBlur(image, k) > threshold).astype(np.uint8)
        assert np.array_equal(_median_above(image, k, threshold), expected)


def _drop_small_reference(mask, min_area, connectivity, keep_border):
    n, labels = cv2.connectedComponents(mask, connectivity=connectivity)
    keep = np.bincount(labels.ravel(), minlength=n) >= min_area
    if keep_border:
        keep[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    keep[0] = False
    return keep[labels].astype(np.uint8)


@pytest.mark.parametrize("quantile", [0.5, 0.9])  # each takes both paths (<= 256 labels or more)
def test_dropping_small_objects_and_holes_is_exact(quantile: float) -> None:
    blurred = cv2.GaussianBlur(np.random.default_rng(7).random((300, 400)), (0, 0), 1.5)
    mask = (blurred > np.quantile(blurred, quantile)).astype(np.uint8)
    labels = {
        c: cv2.connectedComponents(mask if c == 8 else 1 - mask, connectivity=c)[0] for c in (8, 4)
    }
    assert min(labels.values()) <= 256 < max(labels.values())
    for connectivity, keep_border in ((8, False), (4, True)):
        image = mask if connectivity == 8 else 1 - mask
        for min_area in (2, 15, 200):
            got = _drop_small(image, min_area, connectivity=connectivity, keep_border=keep_border)
            expected = _drop_small_reference(image, min_area, connectivity, keep_border)
            assert np.array_equal(got, expected), (quantile, connectivity, min_area)
