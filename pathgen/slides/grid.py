"""Non-overlapping tile grid at a target resolution, filtered by tissue fraction.

Tiles are squares of ``tile_px`` pixels at ``target_mpp`` µm/px, i.e. of side
``step = tile_px * target_mpp / slide_mpp`` level-0 pixels (a float). Tile ``i``
along an axis starts at ``origin + round(i * step)`` and every tile has the same
integer side ``round(step)``; the number of tiles along an axis is
``floor(extent / step)`` (less one if rounding would overflow the extent), so the
same physical area gives the same count whatever the scan resolution.

Example::

    tiles = build_grid(reader, tissue, slide_mpp=0.25, target_mpp=0.5, tile_px=336,
                       min_tissue=0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pathgen.slides.base import Bounds, SlideReader, level_at_or_finer
from pathgen.slides.tissue import TissueMask


@dataclass(frozen=True, slots=True)
class TileSpec:
    """One tile: level-0 square ``(x, y, size_l0)``, read from ``read_level`` at ``mpp``."""

    x: int
    y: int
    size_l0: int
    read_level: int
    mpp: float
    out_px: int
    tissue_fraction: float


def axis_starts(origin: int, extent: int, step: float) -> np.ndarray:
    """Integer start offsets of the tiles along one axis (see module docstring)."""
    side = round(step)
    n = math.floor(extent / step + 1e-9)
    while n > 0 and round((n - 1) * step) + side > extent:
        n -= 1
    return origin + np.round(np.arange(n) * step).astype(np.int64)


def tissue_fractions(tissue: TissueMask, xs: np.ndarray, ys: np.ndarray, side: int) -> np.ndarray:
    """Mean of the mask over each tile footprint, shape ``(len(ys), len(xs))``.

    Uses a summed-area table, so the cost is independent of the tile size.
    """
    mask = tissue.mask
    h, w = mask.shape
    sat = cv2.integral(mask, sdepth=cv2.CV_32S if h * w < 2**31 else cv2.CV_64F)
    dx, dy = tissue.downsample
    x0 = np.clip(np.floor(xs / dx + 0.5).astype(np.int64), 0, w - 1)
    x1 = np.clip(np.floor((xs + side) / dx + 0.5).astype(np.int64), x0 + 1, w)
    y0 = np.clip(np.floor(ys / dy + 0.5).astype(np.int64), 0, h - 1)
    y1 = np.clip(np.floor((ys + side) / dy + 0.5).astype(np.int64), y0 + 1, h)
    total = (
        sat[y1[:, None], x1[None, :]]
        - sat[y0[:, None], x1[None, :]]
        - sat[y1[:, None], x0[None, :]]
        + sat[y0[:, None], x0[None, :]]
    )
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return total / area


def build_grid(
    reader: SlideReader,
    tissue: TissueMask,
    slide_mpp: float,
    target_mpp: float,
    tile_px: int,
    min_tissue: float,
    bounds: Bounds | None = None,
) -> list[TileSpec]:
    """Tiles of the grid inside ``bounds`` (default: the reader's) with enough tissue."""
    b = bounds or reader.bounds
    step = tile_px * target_mpp / slide_mpp
    side = round(step)
    xs = axis_starts(b.x, b.width, step)
    ys = axis_starts(b.y, b.height, step)
    if len(xs) == 0 or len(ys) == 0:
        return []
    frac = tissue_fractions(tissue, xs, ys, side)
    level = level_at_or_finer(reader, side / tile_px)
    rows, cols = np.nonzero(frac >= min_tissue)
    return [
        TileSpec(int(xs[c]), int(ys[r]), side, level, target_mpp, tile_px, float(frac[r, c]))
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
    ]
