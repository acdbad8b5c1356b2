"""Whole-slide images: open, resolve µm/px, detect tissue, tile, preview, synthesize.

Every stage reads slides through one interface, :class:`SlideReader` (see
``pathgen/slides/base.py``), and never through a backend directly:

* ``SlideCache.get(path)`` or ``open_slide(path)`` → a reader. Readers are tried in
  order: OpenSlide; wsidicom and then pydicom for DICOM WSI that OpenSlide refuses;
  tifffile for TIFF that OpenSlide refuses (strips, one level, OME-TIFF, BigTIFF);
  PIL for PNG, JPEG and other flat images. A file none can read raises
  ``SlideError(reason="unsupported")`` naming each reader and why it refused.
* On every reader: ``name`` (the reader, stored on the slide row), ``path``, ``vendor``,
  ``dimensions`` / ``width`` / ``height``, ``level_count``, ``level_dimensions``,
  ``level_downsamples``, ``properties``, ``bounds`` (scanned area), ``resolutions``
  (µm/px the file records), ``read_region(x, y, level, (w, h))`` (an RGBA PIL image,
  level-0 coordinates, outside the image transparent), ``read_rgba`` (the same pixels
  as an RGBA array), ``cache_rows(level, rows)`` and ``close()``.
* ``read_tile(reader, x, y, size_l0, out_px)`` → an RGB tile; ``thumbnail(reader,
  max_px)`` → an RGB overview read strip by strip; ``level_at_or_finer(reader, ds)``
  picks the level to read a resolution from.

Backends (OpenSlide, wsidicom, pydicom, tifffile) are imported only when a slide is
opened.

Example::

    from pathgen.slides import TilingParams, tile_slide, write_preview

    result = tile_slide("slide.svs", TilingParams(mpp=0.5, tile_size=336))
    write_preview(result, "slide.png")
    reader = SlideCache().get("field.png")
    tile = read_tile(reader, 0, 0, 672, 336)
"""

from pathgen.slides.base import Bounds, Resolution, SlideReader, level_at_or_finer
from pathgen.slides.cache import SlideCache
from pathgen.slides.fingerprint import fingerprint_slide
from pathgen.slides.grid import TileSpec, build_grid
from pathgen.slides.mpp import MppSource, resolve_mpp
from pathgen.slides.preview import render_preview, write_preview
from pathgen.slides.reader import finish_tile, read_tile, thumbnail
from pathgen.slides.readers import open_slide
from pathgen.slides.synth import TissueStyle, write_synthetic_slide
from pathgen.slides.tiler import (
    SlideInfo,
    TilingOutcome,
    TilingParams,
    TilingResult,
    tile_slide,
    tile_slides,
)
from pathgen.slides.tissue import TissueMask, TissueParams, detect_tissue

__all__ = [
    "Bounds",
    "MppSource",
    "Resolution",
    "SlideCache",
    "SlideInfo",
    "SlideReader",
    "TileSpec",
    "TilingOutcome",
    "TilingParams",
    "TilingResult",
    "TissueMask",
    "TissueParams",
    "TissueStyle",
    "build_grid",
    "detect_tissue",
    "fingerprint_slide",
    "finish_tile",
    "level_at_or_finer",
    "open_slide",
    "read_tile",
    "render_preview",
    "resolve_mpp",
    "thumbnail",
    "tile_slide",
    "tile_slides",
    "write_preview",
    "write_synthetic_slide",
]
