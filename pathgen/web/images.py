"""Pixels for the web UI, read from the slides on demand (blocking: call in a thread).

Example::

    jpeg = tile_jpeg(cache, "slide.svs", x=674, y=674, size_l0=337, out_px=336)
"""

from __future__ import annotations

import io
import textwrap

from PIL import Image, ImageDraw

from pathgen.slides import SlideCache, read_tile, thumbnail

JPEG_QUALITY = 85
MIN_PX = 16
MAX_PX = 1024


def clamp_px(size: int | None, default: int) -> int:
    """An output side in pixels, bounded so one request cannot ask for a huge image."""
    return max(MIN_PX, min(MAX_PX, size if size is not None else default))


def to_jpeg(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def tile_jpeg(
    cache: SlideCache, slide_path: str, x: int, y: int, size_l0: int, out_px: int
) -> bytes:
    """The tile at level-0 ``(x, y)`` with side ``size_l0``, as an ``out_px`` square JPEG."""
    return to_jpeg(read_tile(cache.get(slide_path), x, y, size_l0, out_px))


def context_jpeg(
    cache: SlideCache,
    slide_path: str,
    x: int,
    y: int,
    size_l0: int,
    out_px: int,
    radius: int = 1,
) -> bytes:
    """The ``(2r+1)``-tile square neighbourhood centred on the tile, with the tile outlined.

    Areas outside the slide come back white (OpenSlide reads them as transparent).
    """
    span = 2 * radius + 1
    img = read_tile(
        cache.get(slide_path), x - radius * size_l0, y - radius * size_l0, span * size_l0, out_px
    )
    draw = ImageDraw.Draw(img)
    cell = out_px / span
    lo, hi = radius * cell, (radius + 1) * cell
    width = max(2, out_px // 150)
    draw.rectangle([lo, lo, hi - 1, hi - 1], outline=(20, 200, 60), width=width)
    return to_jpeg(img)


def slide_thumbnail_jpeg(cache: SlideCache, slide_path: str, max_px: int) -> bytes:
    """The whole slide scaled to fit a ``max_px`` square (from the coarsest level enough)."""
    return to_jpeg(thumbnail(cache.get(slide_path), max_px))


def placeholder_jpeg(out_px: int, message: str) -> bytes:
    """A grey square with ``message`` on it, shown when a slide cannot be read."""
    img = Image.new("RGB", (out_px, out_px), (226, 228, 232))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, out_px - 1, out_px - 1], outline=(170, 174, 182), width=2)
    draw.line([(0, 0), (out_px, out_px)], fill=(200, 203, 208), width=1)
    draw.line([(0, out_px), (out_px, 0)], fill=(200, 203, 208), width=1)
    lines = textwrap.wrap(message, width=max(8, out_px // 7))[:6]
    y = max(4, out_px // 2 - 7 * len(lines))
    for line in lines:
        draw.text((8, y), line, fill=(90, 20, 20))
        y += 14
    return to_jpeg(img)
