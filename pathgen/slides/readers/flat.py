"""PIL: PNG, JPEG and other flat images (microscope cameras, small biopsies, crops).

The image is decoded once, when first read, and kept in memory; images over
:data:`MAX_PIXELS` are refused (convert them to a tiled pyramidal TIFF). Such files
record no microscope resolution, so µm/px comes from the manifest or ``assume_mpp``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from pathgen.errors import ReaderRefused
from pathgen.slides.readers.array import ArrayReader, to_rgba

NAME = "pil"

#: Largest flat image read (decoded into memory whole: 4 bytes per pixel).
MAX_PIXELS = 150_000_000  # below PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS)


class FlatImageReader(ArrayReader):
    """A flat image decoded whole on first read."""

    name = NAME

    def __init__(self, path: Path, image: Any) -> None:
        self.path = str(path)
        self.vendor = str(image.format or "image").lower()
        self.properties = {"pil.format": self.vendor, "pil.mode": str(image.mode)}
        self._image = image
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()
        self._init_levels([image.size])

    def _region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._decoded()[y : y + h, x : x + w]

    def _decoded(self) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                img = self._image
                mode = "RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB"
                self._pixels = to_rgba(np.asarray(img.convert(mode)))
                img.close()
            return self._pixels

    def close(self) -> None:
        """Drop the decoded pixels and close the file."""
        with self._lock:
            self._pixels = None
            self._image.close()


def open_flat(path: Path) -> FlatImageReader:
    """Open a flat image with PIL; raise :class:`ReaderRefused` saying why not."""
    from PIL import Image, UnidentifiedImageError

    if path.is_dir():
        raise ReaderRefused(str(path), NAME, "a folder")
    try:  # PIL's DecompressionBombWarning is not printed (open_slide): our limit is MAX_PIXELS
        img = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise ReaderRefused(str(path), NAME, f"not an image it can read ({exc})") from exc
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise ReaderRefused(
            str(path),
            NAME,
            f"{w}x{h} px is too large to decode whole (limit {MAX_PIXELS:,} px): "
            "convert it to a tiled pyramidal TIFF",
        )
    return FlatImageReader(path, img)
