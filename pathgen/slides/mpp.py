"""Resolve a slide's resolution in µm per pixel, and say where it came from.

Order: the manifest's mpp (the operator's word about this very slide, e.g. for a
converted file whose header went stale; a warning is logged when it disagrees with
the header) → what the file records, as its reader found it (``openslide.mpp-x``/``mpp-y``
then vendor objective power, 10 / power so 40x → 0.25 µm/px; OME ``PhysicalSizeX/Y``;
DICOM ``PixelSpacing``; TIFF resolution tags with their unit) → ``assume_mpp``. Values outside
:data:`PLAUSIBLE_MPP` are ignored: a generic TIFF written by an image editor
carries a 72 dpi "resolution" (352.8 µm/px) that is not a microscope scan.

Example::

    mpp, source = resolve_mpp(reader, manifest_mpp=None, assume_mpp=0.5)
"""

from __future__ import annotations

import logging
from typing import Literal

from pathgen.errors import SlideError
from pathgen.slides.base import SlideReader

log = logging.getLogger(__name__)

MppSource = Literal["openslide", "objective_power", "ome", "dicom", "tiff", "manifest", "assumed"]

#: Range of µm/px accepted as a real microscope resolution (inclusive bounds).
PLAUSIBLE_MPP = (0.01, 100.0)


def _plausible(value: float | None) -> bool:
    return value is not None and PLAUSIBLE_MPP[0] <= value <= PLAUSIBLE_MPP[1]


def resolve_mpp(
    reader: SlideReader,
    manifest_mpp: float | None = None,
    assume_mpp: float | None = None,
) -> tuple[float, MppSource]:
    """Return ``(mpp, source)`` for the slide; raise ``SlideError(reason="no_mpp")``.

    With different x and y resolutions the mean is used when they differ by less than
    5 %, otherwise the slide is rejected (non-square pixels are not supported).
    """
    recorded = _recorded_mpp(reader)
    if manifest_mpp is not None and manifest_mpp > 0:
        if recorded is not None and abs(recorded[0] - manifest_mpp) > 0.1 * recorded[0]:
            log.warning(
                "%s: the manifest's mpp %.4g overrides the %.4g µm/px the slide records (%s)",
                reader.path,
                manifest_mpp,
                recorded[0],
                recorded[1],
            )
        return float(manifest_mpp), "manifest"
    if recorded is not None:
        return recorded
    if assume_mpp is not None and assume_mpp > 0:
        return float(assume_mpp), "assumed"
    raise SlideError(
        reader.path,
        "no_mpp",
        "the slide records no µm/px resolution or objective power: "
        "pass --assume-mpp or add an mpp column to the manifest",
    )


def _recorded_mpp(reader: SlideReader) -> tuple[float, MppSource] | None:
    """What the file itself says (``reader.resolutions``, first plausible), else ``None``."""
    for res in reader.resolutions:
        found = [v for v in (res.x, res.y) if _plausible(v)]
        if not found:
            continue
        x, y = found[0], found[-1]
        if abs(x - y) > 0.05 * max(x, y):
            raise SlideError(
                reader.path,
                "no_mpp",
                f"non-square pixels (mpp-x {x}, mpp-y {y}, from {res.source}) are not supported",
            )
        return (x + y) / 2, res.source  # type: ignore[return-value]
    return None
