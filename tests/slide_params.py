"""Tiling parameters shared by the slide tests."""

from __future__ import annotations

from pathgen.slides import TilingParams, TissueParams

#: The DICOM fixtures (boxes_0.dcm and its variants) are 16x16 px at 0.499 µm/px: tiles of
#: 8 px and a tissue mask at full resolution, keeping every tile.
DICOM_TILES = TilingParams(
    mpp=0.499,
    tile_size=8,
    min_tissue=0.0,
    tissue=TissueParams(
        detection_mpp=0.499,
        median_blur=1,
        saturation_floor=0,
        close_um=0,
        min_object_um2=0,
        min_hole_um2=0,
    ),
)
