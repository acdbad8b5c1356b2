"""OpenSlide: SVS, NDPI, MRXS, SCN, BIF, VMS, tiled TIFF, DICOM WSI with ImageType, ...

It refuses OME-TIFF (OpenSlide reads it as a generic TIFF and misses the OME physical
pixel size and sub-resolution levels), which the tifffile reader then opens.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pathgen.errors import ReaderRefused, SlideError
from pathgen.slides.base import Bounds, ReaderBase, Resolution, cache_bytes

if TYPE_CHECKING:
    import openslide

NAME = "openslide"


class OpenSlideReader(ReaderBase):
    """One OpenSlide handle; thread-safe (OpenSlide releases the GIL while decoding)."""

    name = NAME

    def __init__(self, path: str | Path, handle: openslide.OpenSlide) -> None:
        self.path = str(path)
        self.handle = handle
        self.properties: Mapping[str, str] = dict(handle.properties)
        self.vendor = self.properties.get("openslide.vendor", "unknown")
        self.dimensions = handle.dimensions
        self.level_count = handle.level_count
        self.level_dimensions = handle.level_dimensions
        self.level_downsamples = handle.level_downsamples
        self.bounds = _bounds(self.properties, self.dimensions)
        self.resolutions = parse_resolutions(self.properties)

    def cache_rows(self, level: int, rows: int) -> None:
        """Give this handle its own tile cache of ``rows`` rows of the level's stored tiles
        (OpenSlide's shared default cache is 32 MiB)."""
        import openslide

        tile_h = int(self.properties.get(f"openslide.level[{level}].tile-height", 256) or 256)
        capacity = cache_bytes(self.level_dimensions[level][0], tile_h, rows)
        self.handle.set_cache(openslide.OpenSlideCache(capacity))

    def read_region(self, x: int, y: int, level: int, size: tuple[int, int]) -> Image.Image:
        """OpenSlide ``read_region`` (RGBA), errors mapped to :class:`SlideError`."""
        try:
            return self.handle.read_region((x, y), level, size)
        except Exception as exc:  # openslide.OpenSlideError, lowlevel errors
            raise SlideError(
                self.path,
                "corrupt",
                f"cannot read region ({x}, {y}) level {level}: {exc}",
                reader=NAME,
            ) from exc

    def read_rgba(self, x: int, y: int, level: int, size: tuple[int, int]) -> np.ndarray:
        """:meth:`read_region`'s pixels straight from OpenSlide's buffer: the same bytes
        (converted from premultiplied ARGB by openslide-python's own ``argb2rgba``), without
        the copy of a PIL image into an array."""
        from openslide import _convert, lowlevel

        w, h = size
        if w <= 0 or h <= 0:
            raise SlideError(self.path, "corrupt", f"empty region {w}x{h}", reader=NAME)
        buf = (w * h * ctypes.c_uint32)()
        try:
            lowlevel._read_region(self.handle._osr, buf, x, y, level, w, h)
        except Exception as exc:  # openslide.OpenSlideError, lowlevel errors
            raise SlideError(
                self.path,
                "corrupt",
                f"cannot read region ({x}, {y}) level {level}: {exc}",
                reader=NAME,
            ) from exc
        _convert.argb2rgba(buf)
        return np.frombuffer(buf, np.uint8).reshape(h, w, 4)

    def close(self) -> None:
        """Close the OpenSlide handle (also happens when the reader is garbage collected)."""
        self.handle.close()


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def parse_resolutions(props: Mapping[str, str]) -> tuple[Resolution, ...]:
    """µm/px from OpenSlide properties: ``mpp-x``/``mpp-y``, then the objective power."""
    out: list[Resolution] = []
    mpp_x, mpp_y = _float(props.get("openslide.mpp-x")), _float(props.get("openslide.mpp-y"))
    if mpp_x or mpp_y:
        out.append(Resolution(mpp_x or mpp_y or 0.0, mpp_y or mpp_x or 0.0, "openslide"))
    power = _float(props.get("openslide.objective-power"))
    if power:
        out.append(Resolution(10.0 / power, 10.0 / power, "objective_power"))
    return tuple(out)


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


def open_openslide(path: Path) -> OpenSlideReader:
    """Open ``path`` with OpenSlide; raise :class:`ReaderRefused` saying why not."""
    import openslide

    if path.is_dir():
        raise ReaderRefused(str(path), NAME, "a folder (OpenSlide opens one file of a series)")
    try:
        fmt = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # pragma: no cover - detect_format only fails on I/O errors
        fmt = None
    if fmt is None:
        raise ReaderRefused(str(path), NAME, "not a format it knows")
    try:
        handle = openslide.OpenSlide(str(path))
    except Exception as exc:
        raise ReaderRefused(str(path), NAME, f"cannot open this {fmt} file ({exc})") from exc
    description = handle.properties.get("tiff.ImageDescription", "")
    if fmt == "generic-tiff" and description.lstrip().startswith("<?xml") and "<OME" in description:
        handle.close()
        raise ReaderRefused(str(path), NAME, "OME-TIFF (its OME metadata is left to tifffile)")
    return OpenSlideReader(path, handle)
