"""Preview image of a tiling result: thumbnail, tissue contour and kept tiles.

Example::

    write_preview(result, "previews/slide-1.png")
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from pathgen.slides.tiler import TilingResult

_CONTOUR = (0, 160, 0)  # RGB green
_TILE = (30, 60, 220)  # RGB blue
_FAILED = (220, 30, 30)  # RGB red


def render_preview(result: TilingResult, min_side: int = 768) -> np.ndarray:
    """RGB uint8 preview: the tissue thumbnail, upscaled so its longer side is at least
    ``min_side`` px, with the tissue contour (green), kept tiles (blue) and tiles that
    failed to read (red)."""
    tissue = result.tissue
    h, w = tissue.mask.shape
    scale = max(1.0, min_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = np.ascontiguousarray(cv2.resize(tissue.thumbnail, size, interpolation=cv2.INTER_LINEAR))
    contours, _ = cv2.findContours(tissue.mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    scaled = [np.round((c + 0.5) * scale - 0.5).astype(np.int32) for c in contours]
    cv2.drawContours(img, scaled, -1, _CONTOUR, 2 if scale >= 2 else 1)
    sx, sy = size[0] / result.slide.width, size[1] / result.slide.height
    for tiles, color in ((result.tiles, _TILE), (result.failed_tiles, _FAILED)):
        for t in tiles:
            p0 = (round(t.x * sx), round(t.y * sy))
            p1 = (round((t.x + t.size_l0) * sx) - 1, round((t.y + t.size_l0) * sy) - 1)
            cv2.rectangle(img, p0, p1, color, 1)
    return img


def write_preview(result: TilingResult, out_png: str | os.PathLike[str]) -> Path:
    """Write the preview PNG (parent folders are created) and return its path."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = render_preview(result)
    if not cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write preview {out}: check the folder is writable")
    return out
