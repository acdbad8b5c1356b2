"""The slide reader interface every stage uses, and what all readers share.

A :class:`SlideReader` is one open slide: its pyramid geometry in level-0 pixels, its
properties, the µm/px its file records, and ``read_region``. Each backend (OpenSlide,
wsidicom, pydicom, tifffile, PIL) implements it in its own module; ``open_slide``
tries them in order.

Example::

    level = level_at_or_finer(reader, 4.0)
    region = reader.read_region(1024, 2048, level, (256, 256))  # RGBA PIL image
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

#: Relative tolerance when choosing a pyramid level "at or finer than" a resolution.
LEVEL_EPS = 0.01

#: Bounds of a decoded-tile cache sized by :meth:`SlideReader.cache_rows`.
MIN_CACHE_BYTES, MAX_CACHE_BYTES = 32 << 20, 256 << 20


@dataclass(frozen=True)
class Bounds:
    """Scanned area in level-0 pixels (from ``openslide.bounds-*`` or the full slide)."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Resolution:
    """µm per pixel that a file records, and where: ``openslide``, ``objective_power``,
    ``ome``, ``dicom`` or ``tiff``."""

    x: float
    y: float
    source: str


@runtime_checkable
class SlideReader(Protocol):
    """One open slide. Coordinates are level-0 pixels; ``size`` is in the level's pixels.

    ``name`` is the reader that opened the file (stored on the slide row); ``vendor`` the
    format it found; ``resolutions`` the µm/px the file records, most trusted first.
    """

    name: str
    path: str
    vendor: str
    properties: Mapping[str, str]
    dimensions: tuple[int, int]
    level_count: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    bounds: Bounds
    resolutions: tuple[Resolution, ...]

    @property
    def width(self) -> int:
        """Level-0 width in pixels."""
        ...

    @property
    def height(self) -> int:
        """Level-0 height in pixels."""
        ...

    def read_region(self, x: int, y: int, level: int, size: tuple[int, int]) -> Image.Image:
        """RGBA pixels of ``size`` at ``level`` from level-0 ``(x, y)``; outside is transparent.

        Raises :class:`~pathgen.errors.SlideError` (reason ``corrupt``) when the pixels
        cannot be decoded.
        """
        ...

    def read_rgba(self, x: int, y: int, level: int, size: tuple[int, int]) -> np.ndarray:
        """The pixels of :meth:`read_region` as an RGBA uint8 ``(h, w, 4)`` array, without
        a PIL image in between."""
        ...

    def cache_rows(self, level: int, rows: int) -> None:
        """Keep about ``rows`` rows of the level's decoded stored tiles, so a read pass in
        row order decodes each stored tile once (readers that decode whole frames or
        images may keep nothing)."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class ReaderBase:
    """Geometry and conveniences shared by the readers: a subclass sets the attributes of
    :class:`SlideReader` in ``__init__`` (the levels through :meth:`_set_levels`)."""

    resolutions: tuple[Resolution, ...] = ()

    @property
    def width(self) -> int:
        """Level-0 width in pixels."""
        return self.dimensions[0]

    @property
    def height(self) -> int:
        """Level-0 height in pixels."""
        return self.dimensions[1]

    def _set_levels(self, dims: list[tuple[int, int]]) -> None:
        self.dimensions = dims[0]
        self.level_count = len(dims)
        self.level_dimensions = tuple(dims)
        self.level_downsamples = tuple((dims[0][0] / w + dims[0][1] / h) / 2 for w, h in dims)
        self.bounds = Bounds(0, 0, *dims[0])

    def __enter__(self) -> ReaderBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, {self.vendor}, {self.width}x{self.height})"


def level_at_or_finer(reader: SlideReader, downsample: float) -> int:
    """Coarsest level whose downsample is <= ``downsample`` (with a small tolerance)."""
    best = 0
    for level, ds in enumerate(reader.level_downsamples):
        if ds <= downsample * (1 + LEVEL_EPS) and ds >= reader.level_downsamples[best]:
            best = level
    return best


def nearest_level(reader: SlideReader, downsample: float) -> int:
    """Level whose downsample is nearest to ``downsample`` on a log scale (ties: finer)."""
    target = math.log(max(downsample, 1e-9))
    return min(
        range(reader.level_count),
        key=lambda lv: (abs(math.log(reader.level_downsamples[lv]) - target), lv),
    )


def cache_bytes(level_width: int, tile_height: int, rows: int, bytes_per_px: int = 4) -> int:
    """Bytes of ``rows`` rows of stored tiles of a level, within the cache bounds."""
    wanted = level_width * tile_height * bytes_per_px * rows
    return min(MAX_CACHE_BYTES, max(MIN_CACHE_BYTES, wanted))


def file_magic(path: str | os.PathLike[str], n: int = 132) -> bytes:
    """The first ``n`` bytes of a file (empty for a folder or an unreadable file)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""
