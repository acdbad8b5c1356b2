"""Synthetic whole-slide images for tests and benchmarks.

:func:`write_synthetic_slide` writes a pyramidal, tiled, JPEG-compressed TIFF that
OpenSlide opens as ``generic-tiff`` with every level (reduced levels are marked
``subfiletype=1``) and, unless ``mpp`` is None, ``openslide.mpp-x``/``mpp-y`` from
the TIFF resolution tags (unit centimetre).

The tissue layout is defined in physical units (µm) from the seed, so a slide of
8000x6000 px at 0.25 µm/px and one of 4000x3000 px at 0.5 µm/px with the same seed
show the same tissue in the same places. Tiles are generated one at a time, so a
40000x30000 slide is written without holding the image in memory.

Example::

    write_synthetic_slide("synthetic.tiff", 8000, 6000, mpp=0.25, seed=1)
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: Resolution of the tissue layout fields, µm per pixel.
FIELD_UM = 8.0
#: Spacing of the random nodes of the coarse and fine layout noise, µm.
COARSE_UM, FINE_UM = 800.0, 200.0
#: Layout field value above which there is tissue.
TISSUE_LEVEL = 0.45
#: µm/px used to lay out a slide written without a resolution.
DEFAULT_LAYOUT_MPP = 0.25

_BACKGROUND = np.array([244, 243, 246], np.float32)


@dataclass(frozen=True)
class TissueStyle:
    """Stain colours (RGB) and nuclei of the synthetic tissue; the default is plain H&E.

    Slides of different styles look different to a model (colour, nuclear size and
    density), e.g. for tests where captions must carry a signal a model can learn.
    """

    eosin: tuple[int, int, int] = (233, 158, 196)
    hematoxylin: tuple[int, int, int] = (176, 110, 182)
    nucleus: tuple[int, int, int] = (92, 52, 138)
    nucleus_um: float = 3.0  # radius
    um2_per_nucleus: float = 250.0


def _noise(rng: np.random.Generator, spacing_um: float, fw: int, fh: int) -> np.ndarray:
    factor = int(round(spacing_um / FIELD_UM))
    gw, gh = math.ceil(fw / factor) + 2, math.ceil(fh / factor) + 2
    nodes = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(nodes, (gw * factor, gh * factor), interpolation=cv2.INTER_CUBIC)
    return big[factor : factor + fh, factor : factor + fw]


def layout_fields(width_um: float, height_um: float, seed: int) -> np.ndarray:
    """Two float32 fields at :data:`FIELD_UM` µm/px: tissue level and stain mix (0..1)."""
    fw, fh = max(2, math.ceil(width_um / FIELD_UM)), max(2, math.ceil(height_um / FIELD_UM))
    rng = np.random.default_rng(seed)
    coarse = _noise(rng, COARSE_UM, fw, fh)
    fine = _noise(rng, FINE_UM, fw, fh)
    stain = _noise(rng, FINE_UM, fw, fh)
    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    r2 = ((xx + 0.5) / fw * 2 - 1) ** 2 + ((yy + 0.5) / fh * 2 - 1) ** 2
    tissue = 0.8 * coarse + 0.4 * fine + 0.8 - 1.8 * r2
    mix = np.clip(0.5 + 0.35 * stain, 0, 1)
    return np.ascontiguousarray(np.stack([tissue, mix], axis=-1))


class _TileMaker:
    """Generates the RGB tiles of one pyramid level."""

    def __init__(
        self,
        fields: np.ndarray,
        level_mpp: float,
        tile: int,
        seed: int,
        level: int,
        style: TissueStyle,
    ):
        self.fields = fields
        self.mpp = level_mpp
        self.tile = tile
        self.seed = seed
        self.level = level
        self.white = np.broadcast_to(_BACKGROUND.astype(np.uint8), (tile, tile, 3))
        rng = np.random.default_rng([seed, level, 7])
        tex = rng.standard_normal((2 * tile, 2 * tile)).astype(np.float32)
        sigma = max(0.6, 1.5 / level_mpp)
        tex = cv2.GaussianBlur(tex, (0, 0), sigma, sigmaY=sigma / 3)
        self.texture = tex / max(1e-6, float(tex.std()))
        self.nucleus_px = style.nucleus_um / level_mpp
        self.nuclei_per_tile = (tile * level_mpp) ** 2 / style.um2_per_nucleus
        self.eosin = np.array(style.eosin, np.float32)
        self.hematoxylin = np.array(style.hematoxylin, np.float32)
        self.nucleus = np.array(style.nucleus, np.float32)

    def make(self, tx: int, ty: int) -> np.ndarray:
        t, a = self.tile, self.mpp / FIELD_UM
        fh, fw = self.fields.shape[:2]
        x0, y0 = (tx * t + 0.5) * a - 0.5, (ty * t + 0.5) * a - 0.5
        cx0, cy0 = max(0, int(x0) - 1), max(0, int(y0) - 1)
        cx1, cy1 = min(fw, int(x0 + t * a) + 3), min(fh, int(y0 + t * a) + 3)
        if cx0 >= cx1 or cy0 >= cy1 or self.fields[cy0:cy1, cx0:cx1, 0].max() < TISSUE_LEVEL:
            return self.white
        m = np.float32([[a, 0, x0], [0, a, y0]])
        f = cv2.warpAffine(
            self.fields,
            m,
            (t, t),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        alpha = np.clip((f[..., 0] - TISSUE_LEVEL) * 12.0, 0, 1)
        mix = f[..., 1:2]
        rng = np.random.default_rng([self.seed, self.level, tx, ty])
        ox, oy = rng.integers(0, t, 2)
        tex = self.texture[oy : oy + t, ox : ox + t]
        color = self.eosin * (1 - mix) + self.hematoxylin * mix
        color = color * (1 + 0.07 * tex[..., None])
        if self.nucleus_px >= 0.75:
            nuclei = np.zeros((t, t), np.uint8)
            n = rng.poisson(self.nuclei_per_tile)
            pts = rng.integers(0, t, (n, 2))
            radii = np.maximum(1, (self.nucleus_px * rng.uniform(0.7, 1.3, n)).round())
            for (px, py), r in zip(pts.tolist(), radii.astype(int).tolist(), strict=True):
                cv2.circle(nuclei, (px, py), r, 255, -1, lineType=cv2.LINE_AA)
            k = (nuclei.astype(np.float32) / 255.0 * np.clip(alpha * 2 - 0.5, 0, 1))[..., None]
            color = color * (1 - k) + self.nucleus * k
        al = alpha[..., None]
        out = _BACKGROUND * (1 - al) + color * al
        return np.clip(out, 0, 255).astype(np.uint8)

    def tiles(self, width: int, height: int) -> Iterator[np.ndarray]:
        for ty in range(math.ceil(height / self.tile)):
            for tx in range(math.ceil(width / self.tile)):
                yield self.make(tx, ty)


def pyramid_sizes(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """Level sizes, halving until the slide fits in about two tiles."""
    sizes = [(width, height)]
    while max(sizes[-1]) > 2 * tile:
        w, h = sizes[-1]
        sizes.append((max(1, math.ceil(w / 2)), max(1, math.ceil(h / 2))))
    return sizes


def write_synthetic_slide(
    out_path: str | os.PathLike[str],
    width: int,
    height: int,
    mpp: float | None = 0.25,
    seed: int = 0,
    tile: int = 512,
    quality: int = 90,
    style: TissueStyle = TissueStyle(),
) -> Path:
    """Write a synthetic H&E-like pyramidal TIFF and return its path.

    ``mpp=None`` writes no resolution, so OpenSlide reports no ``openslide.mpp-x``;
    ``style`` sets the stain colours and nuclei.
    """
    import tifffile

    if width < 1 or height < 1:
        raise ValueError(f"slide size must be positive, got {width}x{height}")
    if tile % 16 or tile < 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile}")
    if mpp is not None and mpp <= 0:
        raise ValueError(f"mpp must be > 0, got {mpp}")
    out = Path(out_path)
    layout_mpp = mpp if mpp is not None else DEFAULT_LAYOUT_MPP
    fields = layout_fields(width * layout_mpp, height * layout_mpp, seed)
    seed32 = zlib.crc32(str(seed).encode())
    with tifffile.TiffWriter(out, bigtiff=True) as tif:
        for level, (w, h) in enumerate(pyramid_sizes(width, height, tile)):
            ds = width / w
            maker = _TileMaker(fields, layout_mpp * ds, tile, seed32, level, style)
            extra: dict[str, object] = {}
            if mpp is not None:
                per_cm = 1e4 / (mpp * ds)
                extra = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
            tif.write(
                maker.tiles(w, h),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality},
                subfiletype=0 if level == 0 else 1,
                metadata=None,
                maxworkers=2,
                **extra,
            )
    return out
