"""Tissue detection on a low-resolution view of a slide.

The slide is read at about ``detection_mpp`` µm/px: from the pyramid level nearest
that resolution as it is when one lies within a factor of :data:`NATIVE_SPAN`, else
from the coarsest level at or finer, resized strip by strip so a single-level slide
never loads whole. Then: HSV saturation → median blur → Otsu threshold, never below
``saturation_floor`` → morphological close (``close_um``) → removal of objects
smaller than ``min_object_um2`` and filling of holes smaller than ``min_hole_um2``.

A median blur wider than 5 px is applied through its threshold decomposition: a
pixel's k×k median exceeds ``t`` exactly when more than half of its k×k neighbours do,
so the mask is a box count over ``saturation > t`` (the same mask, at a tenth of the
cost of OpenCV's k ≥ 7 median). Otsu's threshold is then taken on the 5×5 median,
which OpenCV computes cheaply.

Example::

    tissue = detect_tissue(reader, slide_mpp=0.25, params=TissueParams())
    tissue.mask.mean()  # tissue fraction of the whole slide
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pathgen.slides.base import SlideReader, nearest_level
from pathgen.slides.reader import read_lowres

#: The widest median OpenCV computes fast on uint8 (a sorting network); wider ones go
#: through :func:`_median_above`.
FAST_MEDIAN = 5

#: A pyramid level within this factor of the detection resolution is used as it is.
NATIVE_SPAN = 1.5


@dataclass(frozen=True)
class TissueParams:
    """Tissue detection parameters (same fields as ``pathgen.settings.TissueSettings``)."""

    detection_mpp: float = 8.0
    median_blur: int = 7
    saturation_floor: int = 20
    close_um: float = 64.0
    min_object_um2: float = 40_000.0
    min_hole_um2: float = 20_000.0

    @classmethod
    def from_settings(cls, settings: Any) -> TissueParams:
        """Build from ``TissueSettings`` (or any object with the same attributes)."""
        return cls(
            detection_mpp=float(settings.detection_mpp),
            median_blur=int(settings.median_blur),
            saturation_floor=int(settings.saturation_floor),
            close_um=float(settings.close_um),
            min_object_um2=float(settings.min_object_um2),
            min_hole_um2=float(settings.min_hole_um2),
        )


@dataclass(frozen=True, eq=False)
class TissueMask:
    """Binary tissue mask (uint8 0/1) and the RGB image it was computed from.

    ``downsample`` is level-0 pixels per mask pixel along x and y; ``mpp`` is the
    mask's µm per pixel.
    """

    mask: np.ndarray
    thumbnail: np.ndarray
    downsample: tuple[float, float]
    mpp: float
    threshold: int


def segment_tissue(
    rgb: np.ndarray, mask_mpp: float, params: TissueParams
) -> tuple[np.ndarray, int]:
    """Return ``(mask, threshold)`` for an RGB image at ``mask_mpp`` µm/px."""
    sat = cv2.extractChannel(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), 1)  # contiguous: faster blur
    k = params.median_blur if params.median_blur % 2 else params.median_blur + 1
    if k <= 1 or min(sat.shape) < k:
        k = 1
    blurred = cv2.medianBlur(sat, min(k, FAST_MEDIAN)) if k > 1 else sat
    otsu, _ = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = max(int(otsu), int(params.saturation_floor))
    if k <= FAST_MEDIAN:
        mask = (blurred > threshold).astype(np.uint8)
    else:
        mask = _median_above(sat, k, threshold)
    close_px = round(params.close_um / mask_mpp)
    if close_px >= 2:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_px, close_px))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    px_area = mask_mpp * mask_mpp
    mask = _drop_small(mask, params.min_object_um2 / px_area, connectivity=8)
    holes = _drop_small(1 - mask, params.min_hole_um2 / px_area, connectivity=4, keep_border=True)
    return (1 - holes).astype(np.uint8), threshold


def _median_above(image: np.ndarray, k: int, threshold: int) -> np.ndarray:
    """``medianBlur(image, k) > threshold`` as uint8 0/1, by counting neighbours above it
    (replicated borders, as ``cv2.medianBlur``)."""
    above = (image > threshold).astype(np.uint8)
    count = cv2.boxFilter(
        above, cv2.CV_16U, (k, k), normalize=False, borderType=cv2.BORDER_REPLICATE
    )
    return (count > (k * k) // 2).astype(np.uint8)


def _drop_small(
    mask: np.ndarray, min_area: float, *, connectivity: int, keep_border: bool = False
) -> np.ndarray:
    """``mask`` without its connected components smaller than ``min_area`` pixels
    (``keep_border``: components touching the image border are kept whatever their size)."""
    if min_area <= 1 or not mask.any():
        return mask
    n, labels = cv2.connectedComponents(mask, connectivity=connectivity)
    # Few labels: as uint8, counted by a histogram and mapped by a lookup table (much
    # faster than bincount and fancy indexing; float32 counts are exact below 2**24).
    small = labels.astype(np.uint8) if n <= 256 and mask.size < 1 << 24 else None
    if small is not None:
        area = cv2.calcHist([small], [0], None, [n], [0, n]).ravel()
    else:
        area = np.bincount(labels.ravel(), minlength=n)
    keep = area >= min_area
    if keep_border:
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        keep[edge] = True
    keep[0] = False
    if keep[1:].all():
        return mask
    if small is not None:
        lut = np.zeros(256, np.uint8)
        lut[:n] = keep
        return cv2.LUT(small, lut)
    return keep[labels].astype(np.uint8)


def detect_tissue(reader: SlideReader, slide_mpp: float, params: Any = None) -> TissueMask:
    """Detect tissue on ``reader`` (level-0 resolution ``slide_mpp`` µm/px).

    ``params`` is a :class:`TissueParams`, a ``TissueSettings`` or None for defaults.
    """
    p = (
        params
        if isinstance(params, TissueParams)
        else (TissueParams() if params is None else TissueParams.from_settings(params))
    )
    wanted = p.detection_mpp / slide_mpp
    level = nearest_level(reader, wanted)
    if wanted / NATIVE_SPAN <= reader.level_downsamples[level] <= wanted * NATIVE_SPAN:
        out_w, out_h = reader.level_dimensions[level]
    else:
        out_w = max(1, min(reader.width, round(reader.width / wanted)))
        out_h = max(1, min(reader.height, round(reader.height / wanted)))
    rgb = read_lowres(reader, out_w, out_h)
    ds = (reader.width / out_w, reader.height / out_h)
    mask_mpp = slide_mpp * (ds[0] + ds[1]) / 2
    mask, threshold = segment_tissue(rgb, mask_mpp, p)
    return TissueMask(mask=mask, thumbnail=rgb, downsample=ds, mpp=mask_mpp, threshold=threshold)
