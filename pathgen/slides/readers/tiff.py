"""tifffile: TIFF that OpenSlide refuses (strips, a single level, OME-TIFF, BigTIFF).

Pixels are read per stored segment (strip or tile): a region decodes only the segments
it touches, through a byte-bounded LRU cache of decoded segments, and never the whole
image. Uncompressed strips are read row by row straight from the file. A reduced level
is built on first use when the file has no small level (see ``array.py``).

µm/px comes from the OME ``PhysicalSizeX``/``PhysicalSizeY`` (with their units) or from
the TIFF ``XResolution``/``YResolution`` tags with ``ResolutionUnit`` inch or centimetre.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from pathgen.errors import ReaderRefused
from pathgen.slides.base import Resolution, cache_bytes, file_magic
from pathgen.slides.readers.array import ArrayReader, to_rgba

NAME = "tifffile"

TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")

#: µm per unit of OME ``PhysicalSizeXUnit`` (the default unit is µm).
OME_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}

#: Image rows of level 0 the decoded-segment cache holds by default (two grid rows of
#: large tiles read by two threads, whatever the strip height).
DEFAULT_CACHE_ROWS = 2048


class _Level:
    """One level of the file: its page, segment grid and how to read a segment."""

    def __init__(self, page: Any) -> None:
        kf = page.keyframe
        self.page = page
        self.kf = kf
        self.width, self.height = int(kf.imagewidth), int(kf.imagelength)
        self.samples = int(kf.samplesperpixel)
        self.separate = kf.planarconfig == 2
        if kf.is_tiled:
            self.seg_h, self.seg_w = int(kf.tilelength), int(kf.tilewidth)
        else:
            rows_per_strip = int(kf.rowsperstrip) or self.height
            self.seg_h, self.seg_w = min(rows_per_strip, self.height), self.width
        self.rows = math.ceil(self.height / self.seg_h)
        self.cols = math.ceil(self.width / self.seg_w)
        self.raw_rows = kf.compression == 1 and not kf.is_tiled and not self.separate
        self.invert = kf.photometric == 0  # MINISWHITE

    def segment_index(self, sample: int, row: int, col: int) -> int:
        return (sample * self.rows + row) * self.cols + col


class TiffReader(ArrayReader):
    """A TIFF read with tifffile; thread-safe (``os.pread`` and a locked cache)."""

    name = NAME

    def __init__(self, path: Path, tf: Any, series: Any) -> None:
        self.path = str(path)
        self._tf = tf
        self._fd = os.open(path, os.O_RDONLY)
        self._release = weakref.finalize(self, _close, self._fd, tf)  # closed when unused
        self._levels: list[_Level] = []
        for lvl in series.levels:
            level = _Level(lvl.pages[0])
            if self._levels and (
                level.width > self._levels[-1].width or level.height > self._levels[-1].height
            ):
                break
            self._levels.append(level)
        base = self._levels[0]
        self._init_levels([(lv.width, lv.height) for lv in self._levels])
        self.vendor = "ome-tiff" if tf.is_ome else ("bigtiff" if tf.is_bigtiff else "tiff")
        self.resolutions = _resolutions(tf, base.page)
        self.properties = {
            "tiff.organisation": "tiles" if base.kf.is_tiled else "strips",
            "tiff.compression": str(base.kf.compression.name),
            "tiff.segment": f"{base.seg_w}x{base.seg_h}",
            "tiff.file-levels": str(len(self._levels)),
        }
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached = 0
        self._capacity = cache_bytes(base.width, DEFAULT_CACHE_ROWS, 1, 3)
        self._lock = threading.Lock()
        self._decoding: dict[tuple[int, int], threading.Lock] = {}

    def cache_rows(self, level: int, rows: int) -> None:
        """Keep ``rows`` rows of the level's decoded segments (within the cache bounds)."""
        lv = self._levels[min(level, len(self._levels) - 1)]
        with self._lock:
            self._capacity = max(self._capacity, cache_bytes(lv.width, lv.seg_h, rows, 3))

    def _region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        lv = self._levels[level]
        if lv.raw_rows:
            pixels = self._raw_rows(lv, x, y, w, h)
        else:
            pixels = np.empty((h, w, lv.samples), np.uint8)
            for row in range(y // lv.seg_h, (y + h - 1) // lv.seg_h + 1):
                for col in range(x // lv.seg_w, (x + w - 1) // lv.seg_w + 1):
                    sy, sx = row * lv.seg_h, col * lv.seg_w
                    ys, ye = max(y, sy), min(y + h, sy + lv.seg_h)
                    xs, xe = max(x, sx), min(x + w, sx + lv.seg_w)
                    for s in range(lv.samples if lv.separate else 1):
                        seg = self._segment(level, lv, lv.segment_index(s, row, col))
                        part = seg[ys - sy : ye - sy, xs - sx : xe - sx]
                        if lv.separate:
                            pixels[ys - y : ye - y, xs - x : xe - x, s] = part[..., 0]
                        else:
                            pixels[ys - y : ye - y, xs - x : xe - x] = part
        if lv.invert:
            pixels = 255 - pixels
        return to_rgba(pixels)

    def _raw_rows(self, lv: _Level, x: int, y: int, w: int, h: int) -> np.ndarray:
        s = lv.samples
        row_bytes = lv.width * s
        out = np.empty((h, w * s), np.uint8)
        offsets = lv.page.dataoffsets
        for r in range(y, y + h):
            strip = r // lv.seg_h
            start = offsets[strip] + (r - strip * lv.seg_h) * row_bytes + x * s
            data = os.pread(self._fd, w * s, start)
            if len(data) != w * s:
                raise OSError(f"row {r} is cut short: the file is truncated")
            out[r - y] = np.frombuffer(data, np.uint8)
        return out.reshape(h, w, s)

    def _segment(self, level: int, lv: _Level, index: int) -> np.ndarray:
        key = (level, index)
        with self._lock:
            seg = self._cache.get(key)
            if seg is not None:
                self._cache.move_to_end(key)
                return seg
            decoding = self._decoding.setdefault(key, threading.Lock())
        with decoding:  # one thread decodes a segment; the others wait for it
            try:
                return self._decode_once(key, lv, index)
            finally:
                with self._lock:
                    self._decoding.pop(key, None)

    def _decode_once(self, key: tuple[int, int], lv: _Level, index: int) -> np.ndarray:
        with self._lock:
            seg = self._cache.get(key)
            if seg is not None:
                return seg
        offset, count = lv.page.dataoffsets[index], lv.page.databytecounts[index]
        data = os.pread(self._fd, count, offset) if count else None
        decoded, _, _ = lv.kf.decode(
            data, index, jpegtables=lv.page.jpegtables, jpegheader=lv.kf.jpegheader
        )
        if decoded is None:  # an empty segment: white
            seg_h = min(lv.seg_h, lv.height - (index // lv.cols % lv.rows) * lv.seg_h)
            decoded = np.full((seg_h, lv.seg_w, 1 if lv.separate else lv.samples), 255, np.uint8)
        seg = decoded.reshape(decoded.shape[-3:])
        with self._lock:
            self._cache[key] = seg
            self._cached += seg.nbytes
            while self._cached > self._capacity and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
        return seg

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._cache.clear()
            self._cached = 0
        self._release()


def _close(fd: int, tf: Any) -> None:
    os.close(fd)
    tf.close()


def _ome_resolution(tf: Any) -> Resolution | None:
    try:
        root = ET.fromstring(tf.ome_metadata)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels")), None)
    if pixels is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        value = pixels.get(f"PhysicalSize{axis}")
        unit = OME_UNITS_UM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or unit is None:
            return None
        sizes.append(float(value) * unit)
    return Resolution(sizes[0], sizes[1], "ome")


def _tag_resolution(page: Any) -> Resolution | None:
    unit_um = {2: 25400.0, 3: 10000.0}.get(int(page.tags.valueof("ResolutionUnit", 2)))
    xres, yres = page.tags.valueof("XResolution"), page.tags.valueof("YResolution")
    if unit_um is None or not xres or not yres:
        return None
    px_per_unit = [r[0] / r[1] if isinstance(r, tuple) else float(r) for r in (xres, yres)]
    if min(px_per_unit) <= 0:
        return None
    return Resolution(unit_um / px_per_unit[0], unit_um / px_per_unit[1], "tiff")


def _resolutions(tf: Any, page: Any) -> tuple[Resolution, ...]:
    found = [_ome_resolution(tf) if tf.is_ome else None, _tag_resolution(page)]
    return tuple(r for r in found if r is not None)


def _check(path: Path, series: Any) -> None:
    kf = series.levels[0].pages[0].keyframe
    why = None
    if kf.dtype != np.uint8:
        why = f"{kf.dtype} samples (8-bit RGB or grey brightfield images only)"
    elif kf.photometric not in (0, 1, 2, 6):
        why = f"photometric {kf.photometric.name} (RGB, YCbCr or grey only)"
    elif kf.samplesperpixel not in (1, 3, 4) or kf.imagedepth > 1:
        why = f"{kf.samplesperpixel} samples per pixel, depth {kf.imagedepth}"
    if why:
        raise ReaderRefused(str(path), NAME, why)


def open_tiff(path: Path) -> TiffReader:
    """Open a TIFF with tifffile; raise :class:`ReaderRefused` saying why not."""
    if path.is_dir() or file_magic(path, 4) not in TIFF_MAGIC:
        raise ReaderRefused(str(path), NAME, "not a TIFF file")
    import tifffile

    tf = tifffile.TiffFile(path)
    try:
        candidates = [s for s in tf.series if s.levels and s.levels[0].pages]
        if not candidates:
            raise ReaderRefused(str(path), NAME, "no image in the file")
        series = max(candidates, key=lambda s: _area(s.levels[0].pages[0].keyframe))
        _check(path, series)
        return TiffReader(path, tf, series)
    except BaseException:
        tf.close()
        raise


def _area(keyframe: Any) -> int:
    return int(keyframe.imagewidth) * int(keyframe.imagelength)
