"""The slide readers, tried in order by :func:`open_slide`.

=========  ==========================================================  ====================
reader     reads                                                       µm/px from
=========  ==========================================================  ====================
openslide  SVS, NDPI, MRXS, SCN, BIF, VMS, tiled TIFF, DICOM WSI       openslide.mpp-x/y,
                                                                       objective power
wsidicom   DICOM VL Whole Slide Microscopy files and series folders    PixelSpacing
           OpenSlide refuses
pydicom    a single DICOM file whose frames tile the total pixel       PixelSpacing (shared
           matrix in TILED_FULL order (e.g. without ImageType)         functional groups)
tifffile   TIFF OpenSlide refuses: strips, one level, OME-TIFF,        OME PhysicalSizeX/Y,
           BigTIFF                                                     resolution tags
pil        PNG, JPEG and other flat images                             manifest / assume_mpp
=========  ==========================================================  ====================

Heavy libraries are imported inside the reader that needs them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from pathgen.errors import ReaderRefused, SlideError
from pathgen.slides.base import SlideReader
from pathgen.slides.quiet import library_noise

log = logging.getLogger(__name__)


def _openslide(path: Path) -> SlideReader:
    from pathgen.slides.readers.openslide_reader import open_openslide

    return open_openslide(path)


def _wsidicom(path: Path) -> SlideReader:
    from pathgen.slides.readers.dicom import open_wsidicom

    return open_wsidicom(path)


def _pydicom(path: Path) -> SlideReader:
    from pathgen.slides.readers.dicom_frames import open_dicom_frames

    return open_dicom_frames(path)


def _tifffile(path: Path) -> SlideReader:
    from pathgen.slides.readers.tiff import open_tiff

    return open_tiff(path)


def _pil(path: Path) -> SlideReader:
    from pathgen.slides.readers.flat import open_flat

    return open_flat(path)


#: ``(name, opener)`` in the order they are tried.
READERS: tuple[tuple[str, Callable[[Path], SlideReader]], ...] = (
    ("openslide", _openslide),
    ("wsidicom", _wsidicom),
    ("pydicom", _pydicom),
    ("tifffile", _tifffile),
    ("pil", _pil),
)


def open_slide(path: str | os.PathLike[str]) -> SlideReader:
    """Open ``path`` with the first reader that can (for a DICOM series, any one ``.dcm``
    file or the folder).

    Raises :class:`SlideError` with reason ``missing``, or ``unsupported`` naming every
    reader tried and why each refused. What the libraries warn or log while trying is
    not printed (see :mod:`pathgen.slides.quiet`); it is logged at DEBUG.
    """
    p = Path(path)
    if not p.exists():
        raise SlideError(str(path), "missing", "file not found (check the path in the manifest)")
    refusals: list[str] = []
    for name, opener in READERS:
        with library_noise() as heard:
            try:
                return opener(p)
            except ReaderRefused as exc:
                refusals.append(f"{name}: {exc.why}")
            except Exception as exc:  # noqa: BLE001 - a reader's own failure is its refusal
                refusals.append(f"{name}: {type(exc).__name__}: {exc}")
            finally:
                if heard:
                    log.debug("%s: %s said: %s", path, name, "; ".join(heard))
    raise SlideError(
        str(path), "unsupported", "no reader can open this file; tried " + "; ".join(refusals)
    )
