"""Base of the readers that decode pixels themselves (every reader but OpenSlide).

A subclass sets its file's levels with :meth:`ArrayReader._init_levels` and implements
:meth:`ArrayReader._region`, which returns RGBA pixels of a rectangle inside one of
those levels. This class turns that into OpenSlide's ``read_region`` contract (level-0
coordinates, transparent outside the image, errors as ``SlideError``) and adds a
reduced level, built on first use strip by strip, when the file's coarsest level is
larger than :data:`REDUCED_MAX` px: tissue detection, previews and thumbnails then read
a small image instead of decoding the full one each time.
"""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np
from PIL import Image

from pathgen.errors import SlideError
from pathgen.slides.base import ReaderBase

#: Longest side of the coarsest level; a file whose coarsest level is larger gets a
#: reduced level (a power-of-two downsample of it) kept in memory.
REDUCED_MAX = 2048

#: Upper bound on the source pixels decoded per strip while building the reduced level.
STRIP_PIXELS = 8 << 20


class ArrayReader(ReaderBase):
    """Level geometry, ``read_region`` and a reduced level over :meth:`_region`."""

    def _init_levels(self, dims: list[tuple[int, int]]) -> None:
        """Set the file's levels (level 0 first), plus a reduced level when needed."""
        self._file_levels = len(dims)
        w, h = dims[-1]
        factor = 1
        while max(w, h) / factor > REDUCED_MAX:
            factor *= 2
        if factor > 1:
            dims = [*dims, (math.ceil(w / factor), math.ceil(h / factor))]
        self._reduce_by = factor
        self._reduced: np.ndarray | None = None
        self._reduced_lock = threading.Lock()
        self._set_levels(dims)

    def _region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGBA uint8 ``(h, w, 4)`` pixels of a rectangle inside file level ``level``."""
        raise NotImplementedError

    def cache_rows(self, level: int, rows: int) -> None:
        """Readers that keep no decoded tiles ignore this (see :class:`SlideReader`)."""

    def read_region(self, x: int, y: int, level: int, size: tuple[int, int]) -> Image.Image:
        """RGBA region at ``level`` from level-0 ``(x, y)``; outside the image transparent."""
        return Image.fromarray(self.read_rgba(x, y, level, size), "RGBA")

    def read_rgba(self, x: int, y: int, level: int, size: tuple[int, int]) -> np.ndarray:
        """:meth:`read_region` as an RGBA ``(h, w, 4)`` array."""
        ds = self.level_downsamples[level]
        lx, ly = math.floor(x / ds), math.floor(y / ds)
        w, h = size
        lw, lh = self.level_dimensions[level]
        x0, y0, x1, y1 = max(0, lx), max(0, ly), min(lw, lx + w), min(lh, ly + h)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((h, w, 4), np.uint8)
        try:
            if level >= self._file_levels:
                pixels = self._reduced_level()[y0:y1, x0:x1]
            else:
                pixels = self._region(level, x0, y0, x1 - x0, y1 - y0)
        except SlideError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure: the data is damaged
            raise SlideError(
                self.path,
                "corrupt",
                f"cannot read region ({x}, {y}) level {level}: {type(exc).__name__}: {exc}",
                reader=self.name,
            ) from exc
        if (x0, y0, x1, y1) != (lx, ly, lx + w, ly + h):
            out = np.zeros((h, w, 4), np.uint8)
            out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = pixels
            pixels = out
        return np.ascontiguousarray(pixels)

    def _reduced_level(self) -> np.ndarray:
        with self._reduced_lock:
            if self._reduced is None:
                self._reduced = self._build_reduced()
            return self._reduced

    def _build_reduced(self) -> np.ndarray:
        src = self._file_levels - 1
        sw, sh = self.level_dimensions[src]
        rw, rh = self.level_dimensions[-1]
        factor = self._reduce_by
        out = np.empty((rh, rw, 4), np.uint8)
        out_rows = max(1, STRIP_PIXELS // max(1, sw) // factor)
        for r0 in range(0, rh, out_rows):
            r1 = min(rh, r0 + out_rows)
            y0, y1 = r0 * factor, min(sh, r1 * factor)
            block = self._region(src, 0, y0, sw, y1 - y0)
            out[r0:r1] = cv2.resize(block, (rw, r1 - r0), interpolation=cv2.INTER_AREA)
        return out


def to_rgba(pixels: np.ndarray) -> np.ndarray:
    """``(h, w)``, ``(h, w, 1)``, ``(h, w, 3)`` or ``(h, w, 4)`` uint8 → ``(h, w, 4)`` RGBA."""
    samples = 1 if pixels.ndim == 2 else pixels.shape[2]
    if samples == 4:
        return np.ascontiguousarray(pixels)
    code = cv2.COLOR_GRAY2RGBA if samples == 1 else cv2.COLOR_RGB2RGBA
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)
