"""Whole-slide images: open, resolve µm/px, detect tissue, tile, preview, synthesize.

OpenSlide is imported only when a slide is opened.

Example::

    from pathgen.slides import TilingParams, tile_slide, write_preview

    result = tile_slide("slide.svs", TilingParams(mpp=0.5, tile_size=336))
    write_preview(result, "slide.png")
"""

from pathgen.slides.cache import SlideCache
from pathgen.slides.fingerprint import fingerprint_slide
from pathgen.slides.grid import TileSpec, build_grid
from pathgen.slides.mpp import MppSource, resolve_mpp
from pathgen.slides.preview import render_preview, write_preview
from pathgen.slides.reader import Bounds, SlideReader, finish_tile, open_slide, read_tile
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
    "open_slide",
    "read_tile",
    "render_preview",
    "resolve_mpp",
    "tile_slide",
    "tile_slides",
    "write_preview",
    "write_synthetic_slide",
]
