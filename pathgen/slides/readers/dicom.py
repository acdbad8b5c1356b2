"""wsidicom: DICOM VL Whole Slide Microscopy files and series folders OpenSlide refuses
(e.g. an unsupported transfer syntax such as RLE, or a folder passed as the slide).

A ``.dcm`` file is opened together with the ``.dcm`` files of its folder that belong to
the same series; a folder is opened whole. µm/px comes from the base level's
``PixelSpacing`` (shared functional groups).
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from pathgen.errors import ReaderRefused
from pathgen.slides.base import Resolution, file_magic
from pathgen.slides.readers.array import ArrayReader, to_rgba

NAME = "wsidicom"


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    return file_magic(path, 132)[128:132] == b"DICM"


class WsiDicomReader(ArrayReader):
    """A DICOM WSI series opened with wsidicom (reads are serialised)."""

    name = NAME

    def __init__(self, path: Path, slide: Any) -> None:
        self.path = str(path)
        self.vendor = "dicom"
        self._slide = slide
        self._release = weakref.finalize(self, slide.close)  # closed when unused
        self._lock = threading.Lock()
        self._pyramid_levels = [level.level for level in slide.levels]
        self._init_levels([(lv.size.width, lv.size.height) for lv in slide.levels])
        mpp = slide.levels[0].mpp
        self.resolutions = (
            (Resolution(float(mpp.width), float(mpp.height), "dicom"),) if mpp else ()
        )
        self.properties = {
            "dicom.levels": str(len(slide.levels)),
            "dicom.frame-size": str(slide.levels[0].tile_size),
        }

    def _region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        with self._lock:
            pixels = self._slide.read_region(
                (x, y), self._pyramid_levels[level], (w, h), as_array=True
            )
        return to_rgba(np.asarray(pixels))

    def close(self) -> None:
        """Close the series' files."""
        self._release()


def series_files(path: Path) -> list[Path]:
    """The ``.dcm`` files beside ``path`` that belong to its series (``path`` first)."""
    import pydicom

    uid = pydicom.dcmread(path, stop_before_pixels=True).get("SeriesInstanceUID")
    files = [path]
    for other in sorted(path.parent.glob("*.dcm")):
        if other == path:
            continue
        try:
            head = pydicom.dcmread(other, stop_before_pixels=True)
        except Exception:  # noqa: BLE001, S112 - not DICOM: not part of the series
            continue
        if uid is not None and head.get("SeriesInstanceUID") == uid:
            files.append(other)
    return files


def open_wsidicom(path: Path) -> WsiDicomReader:
    """Open a DICOM WSI file or folder with wsidicom; raise :class:`ReaderRefused` if not."""
    if path.is_dir():
        if not any(is_dicom(f) for f in path.glob("*.dcm")):
            raise ReaderRefused(str(path), NAME, "a folder without DICOM files")
        source: Any = path
    elif not is_dicom(path):
        raise ReaderRefused(str(path), NAME, "not a DICOM file")
    else:
        source = series_files(path)
    from wsidicom import WsiDicom

    try:
        slide = WsiDicom.open(source)
    except Exception as exc:  # noqa: BLE001 - wsidicom's errors are its reasons
        raise ReaderRefused(str(path), NAME, f"{type(exc).__name__}: {exc}") from exc
    if not slide.levels:
        slide.close()
        raise ReaderRefused(str(path), NAME, "no pyramid level in the series")
    return WsiDicomReader(path, slide)
