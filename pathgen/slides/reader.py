"""Pixels from any slide reader: a tile, a thumbnail, a low-resolution whole slide.

:func:`read_tile` is the single function every stage uses to get a tile's pixels back
from its level-0 coordinates, whatever reader opened the slide; :func:`read_lowres` and
:func:`thumbnail` read the whole slide strip by strip, so memory stays bounded.

Example::

    reader = open_slide("slide.svs")
    img = read_tile(reader, x=1024, y=2048, size_l0=672, out_px=336)
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pathgen.slides.base import SlideReader, level_at_or_finer

#: Upper bound on the pixels read per strip when building a low-resolution image.
STRIP_PIXELS = 8 << 20

#: Resampling filter used whenever a tile must be resized to its output size.
RESAMPLE = Image.Resampling.LANCZOS


def read_tile(reader: SlideReader, x: int, y: int, size_l0: int, out_px: int) -> Image.Image:
    """Read the square of side ``size_l0`` at level-0 ``(x, y)`` as an ``out_px`` RGB image.

    The pixels come from the coarsest pyramid level at or finer than the requested
    resolution (``size_l0 / out_px`` level-0 pixels per output pixel), are resized
    with a Lanczos filter when needed, and transparent (unscanned) areas become white.
    """
    level = level_at_or_finer(reader, size_l0 / out_px)
    ds = reader.level_downsamples[level]
    side = max(1, round(size_l0 / ds))
    region = reader.read_region(x, y, level, (side, side))
    return finish_tile(region, out_px)


def finish_tile(region: Image.Image, out_px: int) -> Image.Image:
    """Composite an RGBA region onto white and resize it to ``out_px``."""
    rgb = on_white(region)
    if rgb.size != (out_px, out_px):
        rgb = rgb.resize((out_px, out_px), RESAMPLE)
    return rgb


def on_white(region: Image.Image) -> Image.Image:
    """An RGB copy of ``region`` with transparent (unscanned) areas white."""
    if region.mode != "RGBA":
        return region.convert("RGB")
    alpha = region.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return region.convert("RGB")
    rgb = Image.new("RGB", region.size, (255, 255, 255))
    rgb.paste(region, mask=alpha)
    return rgb


def thumbnail(reader: SlideReader, max_px: int) -> Image.Image:
    """RGB image of the whole slide fitting in ``max_px`` x ``max_px`` (alpha → white),
    read strip by strip from the coarsest level at or finer than needed."""
    scale = max(1.0, max(reader.width, reader.height) / max(1, max_px))
    size = (max(1, round(reader.width / scale)), max(1, round(reader.height / scale)))
    return Image.fromarray(read_lowres(reader, *size))


def read_lowres(reader: SlideReader, out_w: int, out_h: int) -> np.ndarray:
    """RGB uint8 array of the whole slide resized to ``out_w`` x ``out_h``, alpha → white.

    Read from the coarsest level at or finer than needed, in strips of at most
    :data:`STRIP_PIXELS` pixels, so memory stays bounded whatever the level's size.
    """
    level = level_at_or_finer(reader, reader.width / out_w)
    lw, lh = reader.level_dimensions[level]
    ds = reader.level_downsamples[level]
    if (lw, lh) == (out_w, out_h) and lw * lh <= STRIP_PIXELS:
        return _rgb(reader.read_rgba(0, 0, level, (lw, lh)))
    out = np.empty((out_h, out_w, 3), np.uint8)
    rows_per_strip = max(1, min(out_h, int(STRIP_PIXELS // max(1, lw) * out_h / lh)))
    for r0 in range(0, out_h, rows_per_strip):
        r1 = min(out_h, r0 + rows_per_strip)
        y0 = int(np.floor(r0 * lh / out_h))
        y1 = min(lh, max(y0 + 1, int(np.ceil(r1 * lh / out_h))))
        rgb = _rgb(reader.read_rgba(0, round(y0 * ds), level, (lw, y1 - y0)))
        out[r0:r1] = cv2.resize(rgb, (out_w, r1 - r0), interpolation=cv2.INTER_AREA)
    return out


def _rgb(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    a = alpha[..., None].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return rgb.round().astype(np.uint8)
