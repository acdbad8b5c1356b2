"""pydicom: the last DICOM fallback, for a single file that OpenSlide and wsidicom refuse
(e.g. one without ImageType) whose frames tile the total pixel matrix in TILED_FULL
order: frame count = ⌈columns / frame width⌉ × ⌈rows / frame height⌉, row by row.

Only the frames a region touches are read: their byte ranges are found once (the
encapsulated item table, or the fixed frame size of native pixel data) and decoded with
imagecodecs; a small LRU keeps recently decoded frames. µm/px comes from
``PixelSpacing`` in the shared functional groups (or the top level), in mm.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from pathgen.errors import ReaderRefused
from pathgen.slides.base import Resolution
from pathgen.slides.readers.array import ArrayReader, to_rgba
from pathgen.slides.readers.dicom import is_dicom

NAME = "pydicom"

#: Decoded frames kept per reader.
FRAME_CACHE = 256

_ITEM, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)


class DicomFramesReader(ArrayReader):
    """A TILED_FULL multi-frame DICOM image read frame by frame."""

    name = NAME

    def __init__(self, path: Path, ds: Any, spans: list[tuple[int, int]], native: bool) -> None:
        self.path = str(path)
        self.vendor = "dicom"
        self._fd = os.open(path, os.O_RDONLY)
        self._release = weakref.finalize(self, os.close, self._fd)  # closed when unused
        self._spans = spans
        self._native = native
        self._frame_w, self._frame_h = int(ds.Columns), int(ds.Rows)
        self._samples = int(ds.SamplesPerPixel)
        self._width, self._height = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
        self._cols = math.ceil(self._width / self._frame_w)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._init_levels([(self._width, self._height)])
        spacing = _pixel_spacing(ds)
        self.resolutions = (
            (Resolution(spacing[1] * 1000, spacing[0] * 1000, "dicom"),) if spacing else ()
        )
        self.properties = {
            "dicom.transfer-syntax": str(ds.file_meta.TransferSyntaxUID),
            "dicom.frames": str(len(spans)),
            "dicom.frame-size": f"{self._frame_w}x{self._frame_h}",
        }

    def _region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        fw, fh = self._frame_w, self._frame_h
        out = np.empty((h, w, self._samples), np.uint8)
        for row in range(y // fh, (y + h - 1) // fh + 1):
            for col in range(x // fw, (x + w - 1) // fw + 1):
                frame = self._frame(row * self._cols + col)
                fy, fx = row * fh, col * fw
                ys, ye = max(y, fy), min(y + h, fy + fh)
                xs, xe = max(x, fx), min(x + w, fx + fw)
                out[ys - y : ye - y, xs - x : xe - x] = frame[ys - fy : ye - fy, xs - fx : xe - fx]
        return to_rgba(out)

    def _frame(self, index: int) -> np.ndarray:
        with self._lock:
            frame = self._cache.get(index)
            if frame is not None:
                self._cache.move_to_end(index)
                return frame
        offset, length = self._spans[index]
        data = os.pread(self._fd, length, offset)
        if self._native:
            frame = np.frombuffer(data, np.uint8).reshape(self._frame_h, self._frame_w, -1)
        else:
            import imagecodecs

            frame = np.asarray(imagecodecs.imread(data))
            if frame.ndim == 2:
                frame = frame[..., None]
        with self._lock:
            self._cache[index] = frame
            while len(self._cache) > FRAME_CACHE:
                self._cache.popitem(last=False)
        return frame

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._cache.clear()
        self._release()


def _pixel_spacing(ds: Any) -> tuple[float, float] | None:
    for group in ds.get("SharedFunctionalGroupsSequence") or []:
        for measures in group.get("PixelMeasuresSequence") or []:
            if measures.get("PixelSpacing"):
                return float(measures.PixelSpacing[0]), float(measures.PixelSpacing[1])
    if ds.get("PixelSpacing"):
        return float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])
    return None


def _encapsulated_spans(path: Path, start: int, frames: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of each frame's bytes: one fragment per frame, or the offsets
    of the Basic Offset Table."""
    fragments: list[tuple[int, int]] = []
    with open(path, "rb") as fh:
        fh.seek(start)
        group, elem, bot_len = struct.unpack("<HHI", fh.read(8))
        if (group, elem) != _ITEM:
            raise ValueError("encapsulated pixel data does not start with an item")
        bot = struct.unpack(f"<{bot_len // 4}I", fh.read(bot_len)) if bot_len else ()
        first = fh.tell()
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("the pixel data is cut short")
            group, elem, length = struct.unpack("<HHI", head)
            if (group, elem) == _SEQ_END:
                break
            fragments.append((fh.tell(), length))
            fh.seek(length, os.SEEK_CUR)
    if len(fragments) == frames:
        return fragments
    if len(bot) == frames:
        ends = [*[first + b for b in bot[1:]], fragments[-1][0] + fragments[-1][1] + 8]
        spans = []
        for begin, end in zip((first + b for b in bot), ends, strict=True):
            parts = [f for f in fragments if begin <= f[0] - 8 < end]
            if len(parts) != 1:
                raise ValueError("frames split over several fragments are not supported")
            spans.append(parts[0])
        return spans
    raise ValueError(f"{len(fragments)} fragments for {frames} frames and no offset table")


def open_dicom_frames(path: Path) -> DicomFramesReader:
    """Open a TILED_FULL multi-frame DICOM file with pydicom; raise :class:`ReaderRefused`."""
    if path.is_dir() or not is_dicom(path):
        raise ReaderRefused(str(path), NAME, "not a DICOM file")
    import pydicom

    ds = pydicom.dcmread(path, defer_size=1024)
    if "PixelData" not in ds or "TotalPixelMatrixColumns" not in ds:
        raise ReaderRefused(str(path), NAME, "no tiled pixel matrix (TotalPixelMatrixColumns)")
    organisation = ds.get("DimensionOrganizationType", "TILED_FULL")
    frames = int(ds.get("NumberOfFrames", 1))
    fw, fh = int(ds.Columns), int(ds.Rows)
    expected = math.ceil(int(ds.TotalPixelMatrixColumns) / fw) * math.ceil(
        int(ds.TotalPixelMatrixRows) / fh
    )
    why = None
    if organisation != "TILED_FULL":
        why = f"dimension organisation {organisation} (TILED_FULL only)"
    elif frames != expected:
        why = f"{frames} frames do not tile the pixel matrix in one plane ({expected} expected)"
    elif int(ds.BitsAllocated) != 8 or int(ds.SamplesPerPixel) not in (1, 3):
        why = f"{ds.BitsAllocated}-bit, {ds.SamplesPerPixel}-sample pixels (8-bit only)"
    if why:
        raise ReaderRefused(str(path), NAME, why)
    start = ds.get_item("PixelData").value_tell
    tsyntax = ds.file_meta.TransferSyntaxUID
    if tsyntax.is_encapsulated:
        try:
            spans = _encapsulated_spans(path, start, frames)
        except (ValueError, struct.error) as exc:
            raise ReaderRefused(str(path), NAME, str(exc)) from exc
        return DicomFramesReader(path, ds, spans, native=False)
    photometric = ds.PhotometricInterpretation
    if photometric not in ("RGB", "MONOCHROME2") or ds.get("PlanarConfiguration", 0):
        raise ReaderRefused(str(path), NAME, f"native {photometric} pixels (interleaved RGB only)")
    size = fw * fh * int(ds.SamplesPerPixel)
    return DicomFramesReader(path, ds, [(start + i * size, size) for i in range(frames)], True)
