"""Open a whole-slide image with OpenSlide and read tiles from it.

:class:`SlideReader` wraps one OpenSlide handle; it is thread-safe (OpenSlide
releases the GIL while decoding) and meant to be reused for every tile of a
slide. :func:`read_tile` is the single function every stage uses to get a
tile's pixels back from its level-0 coordinates.

Example::

    reader = open_slide("slide.svs")
    img = read_tile(reader, x=1024, y=2048, size_l0=672, out_px=336)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from pathgen.errors import SlideError

if TYPE_CHECKING:
    import openslide

#: Relative tolerance when choosing a pyramid level "at or finer than" a resolution.
LEVEL_EPS = 0.01

#: Resampling filter used whenever a tile must be resized to its output size.
RESAMPLE = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class Bounds:
    """Scanned area in level-0 pixels (from ``openslide.bounds-*`` or the full slide)."""

    x: int
    y: int
    width: int
    height: int


class SlideReader:
    """One open slide: its path, pyramid geometry and OpenSlide handle."""

    def __init__(self, path: str | os.PathLike[str], handle: openslide.OpenSlide) -> None:
        self.path = str(path)
        self.handle = handle
        self.properties: Mapping[str, str] = dict(handle.properties)
        self.vendor: str = self.properties.get("openslide.vendor", "unknown")
        self.dimensions: tuple[int, int] = handle.dimensions
        self.level_count: int = handle.level_count
        self.level_dimensions: tuple[tuple[int, int], ...] = handle.level_dimensions
        self.level_downsamples: tuple[float, ...] = handle.level_downsamples
        self.bounds = _bounds(self.properties, self.dimensions)

    @property
    def width(self) -> int:
        """Level-0 width in pixels."""
        return self.dimensions[0]

    @property
    def height(self) -> int:
        """Level-0 height in pixels."""
        return self.dimensions[1]

    def level_at_or_finer(self, downsample: float) -> int:
        """Coarsest level whose downsample is <= ``downsample`` (with a small tolerance)."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + LEVEL_EPS) and ds >= self.level_downsamples[best]:
                best = level
        return best

    def cache_bytes_for_rows(self, level: int, rows: int = 3) -> int:
        """Bytes of decoded tiles in ``rows`` rows of the level's stored tiles."""
        tile_h = int(self.properties.get(f"openslide.level[{level}].tile-height", 256) or 256)
        return self.level_dimensions[level][0] * tile_h * 4 * rows

    def set_cache_bytes(self, capacity: int) -> None:
        """Give this handle its own OpenSlide tile cache of ``capacity`` bytes.

        A read pass over a grid in row order re-decodes every stored tile that spans two
        grid rows unless the cache holds a few rows of stored tiles (see
        :meth:`cache_bytes_for_rows`); OpenSlide's shared default cache is 32 MiB.
        """
        import openslide

        self.handle.set_cache(openslide.OpenSlideCache(capacity))

    def read_region(self, x: int, y: int, level: int, size: tuple[int, int]) -> Image.Image:
        """Raw OpenSlide ``read_region`` (RGBA), errors mapped to :class:`SlideError`."""
        try:
            return self.handle.read_region((x, y), level, size)
        except Exception as exc:  # openslide.OpenSlideError, lowlevel errors
            raise SlideError(
                self.path, "corrupt", f"cannot read region ({x}, {y}) level {level}: {exc}"
            ) from exc

    def close(self) -> None:
        """Close the OpenSlide handle (also happens when the reader is garbage collected)."""
        self.handle.close()

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SlideReader({self.path!r}, {self.vendor}, {self.width}x{self.height})"


def _bounds(props: Mapping[str, str], dims: tuple[int, int]) -> Bounds:
    try:
        x = int(props["openslide.bounds-x"])
        y = int(props["openslide.bounds-y"])
        w = int(props["openslide.bounds-width"])
        h = int(props["openslide.bounds-height"])
    except (KeyError, ValueError):
        return Bounds(0, 0, dims[0], dims[1])
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(dims[0], x + w), min(dims[1], y + h)
    if x1 <= x0 or y1 <= y0:
        return Bounds(0, 0, dims[0], dims[1])
    return Bounds(x0, y0, x1 - x0, y1 - y0)


def open_slide(path: str | os.PathLike[str]) -> SlideReader:
    """Open ``path`` with OpenSlide (for a DICOM series pass any one ``.dcm`` file).

    Raises :class:`SlideError` with reason ``missing`` or ``unsupported``.
    """
    import openslide

    p = Path(path)
    if not p.exists():
        raise SlideError(str(path), "missing", "file not found (check the path in the manifest)")
    try:
        fmt = openslide.OpenSlide.detect_format(str(p))
    except Exception:  # pragma: no cover - detect_format only fails on I/O errors
        fmt = None
    if fmt is None:
        raise SlideError(
            str(path),
            "unsupported",
            "not a slide format OpenSlide can read (SVS, NDPI, MRXS, DICOM, tiled TIFF, ...)",
        )
    try:
        handle = openslide.OpenSlide(str(p))
    except Exception as exc:
        raise SlideError(
            str(path), "unsupported", f"OpenSlide cannot open this {fmt} file: {exc}"
        ) from exc
    return SlideReader(p, handle)


def read_tile(reader: SlideReader, x: int, y: int, size_l0: int, out_px: int) -> Image.Image:
    """Read the square of side ``size_l0`` at level-0 ``(x, y)`` as an ``out_px`` RGB image.

    The pixels come from the coarsest pyramid level at or finer than the requested
    resolution (``size_l0 / out_px`` level-0 pixels per output pixel), are resized
    with a Lanczos filter when needed, and transparent (unscanned) areas become white.
    """
    level = reader.level_at_or_finer(size_l0 / out_px)
    ds = reader.level_downsamples[level]
    side = max(1, round(size_l0 / ds))
    region = reader.read_region(x, y, level, (side, side))
    return finish_tile(region, out_px)


def finish_tile(region: Image.Image, out_px: int) -> Image.Image:
    """Composite an OpenSlide RGBA region onto white and resize it to ``out_px``."""
    if region.mode == "RGBA":
        alpha = region.getchannel("A")
        lo, _ = alpha.getextrema()
        if lo == 255:
            rgb = region.convert("RGB")
        else:
            rgb = Image.new("RGB", region.size, (255, 255, 255))
            rgb.paste(region, mask=alpha)
    else:
        rgb = region.convert("RGB")
    if rgb.size != (out_px, out_px):
        rgb = rgb.resize((out_px, out_px), RESAMPLE)
    return rgb
