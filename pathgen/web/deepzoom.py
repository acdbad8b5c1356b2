"""Deep Zoom (DZI) pyramids of a slide through the reader interface, for OpenSeadragon.

Level ``max_level`` is the slide at its native (level-0) resolution; each level below
halves it, down to 1 × 1 pixel. A Deep Zoom tile is read from the coarsest pyramid level
of the slide that is at least as fine as it needs, so every format a
:class:`~pathgen.slides.base.SlideReader` opens can be viewed (blocking: call in a thread).

Example::

    dz = DeepZoom(width=46000, height=32914)
    xml = dz.dzi_xml()
    jpeg = dz_tile_jpeg(cache.get(path), dz, level=dz.max_level, col=10, row=12)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from pathgen.slides.base import SlideReader
from pathgen.web.images import to_jpeg

TILE = 254
OVERLAP = 1
_EPS = 1e-6


@dataclass(frozen=True)
class DeepZoom:
    """The Deep Zoom geometry of a ``width`` × ``height`` (level-0 pixels) slide."""

    width: int
    height: int
    tile: int = TILE
    overlap: int = OVERLAP

    @property
    def max_level(self) -> int:
        return max(0, math.ceil(math.log2(max(self.width, self.height, 1))))

    def scale(self, level: int) -> int:
        """Level-0 pixels per pixel of Deep Zoom ``level``."""
        return 2 ** (self.max_level - level)

    def level_size(self, level: int) -> tuple[int, int]:
        s = self.scale(level)
        return max(1, math.ceil(self.width / s)), max(1, math.ceil(self.height / s))

    def grid(self, level: int) -> tuple[int, int]:
        """Columns and rows of tiles at ``level``."""
        w, h = self.level_size(level)
        return math.ceil(w / self.tile), math.ceil(h / self.tile)

    def has_tile(self, level: int, col: int, row: int) -> bool:
        if not 0 <= level <= self.max_level:
            return False
        cols, rows = self.grid(level)
        return 0 <= col < cols and 0 <= row < rows

    def tile_box(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of the tile in ``level``'s pixels, overlap included."""
        w, h = self.level_size(level)
        x0 = col * self.tile - (self.overlap if col else 0)
        y0 = row * self.tile - (self.overlap if row else 0)
        x1 = min(w, (col + 1) * self.tile + self.overlap)
        y1 = min(h, (row + 1) * self.tile + self.overlap)
        return x0, y0, x1 - x0, y1 - y0

    def dzi_xml(self) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpeg" '
            f'Overlap="{self.overlap}" TileSize="{self.tile}">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>'
        )


def _source_level(reader: SlideReader, scale: float) -> int:
    """The coarsest pyramid level whose downsample is at most ``scale``."""
    fits = [i for i, d in enumerate(reader.level_downsamples) if d <= scale * (1 + _EPS)]
    return max(fits) if fits else 0


def dz_tile(reader: SlideReader, dz: DeepZoom, level: int, col: int, row: int) -> Image.Image:
    """The RGB pixels of one Deep Zoom tile (areas outside the slide white)."""
    x, y, w, h = dz.tile_box(level, col, row)
    scale = dz.scale(level)
    src = _source_level(reader, scale)
    ds = reader.level_downsamples[src]
    size = (max(1, math.ceil(w * scale / ds)), max(1, math.ceil(h * scale / ds)))
    region = reader.read_region(x * scale, y * scale, src, size)
    if region.size != (w, h):
        region = region.resize((w, h), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (w, h), (255, 255, 255))
    out.paste(region, mask=region.getchannel("A") if region.mode == "RGBA" else None)
    return out


def dz_tile_jpeg(reader: SlideReader, dz: DeepZoom, level: int, col: int, row: int) -> bytes:
    return to_jpeg(dz_tile(reader, dz, level, col, row))
