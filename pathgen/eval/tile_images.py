"""CLIP image embeddings of a run's tiles, read back from the slides and cached per tile.

Example::

    images = TileImageCache(clip, SlideCache(16))
    emb = images.embeddings(tile_refs)     # {tile_id: (D,) unit-norm float32}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pathgen.embed.model import ClipModel
from pathgen.embed.tiles import embed_tiles
from pathgen.eval.records import TileRef
from pathgen.slides import SlideCache, read_tile


class TileImageCache:
    """Embeds each tile once per evaluation; tiles that cannot be read are remembered."""

    def __init__(self, clip: ClipModel, slides: SlideCache, reader_threads: int = 2) -> None:
        self.clip = clip
        self.slides = slides
        self.reader_threads = reader_threads
        self._emb: dict[int, np.ndarray] = {}
        self.errors: dict[int, str] = {}

    def _read(self, tile: TileRef):  # noqa: ANN202 - PIL image
        reader = self.slides.get(tile.slide_path)
        return read_tile(reader, tile.x, tile.y, tile.size, tile.tile_px)

    def embeddings(self, tiles: Sequence[TileRef]) -> dict[int, np.ndarray]:
        """Unit-norm embeddings of ``tiles`` that could be read (reads run in a thread pool)."""
        todo = [t for t in tiles if t.tile_id not in self._emb and t.tile_id not in self.errors]
        if todo:
            result = embed_tiles(self.clip, todo, self._read, reader_threads=self.reader_threads)
            for tile, row in zip(result.select(todo), result.embeddings, strict=True):
                self._emb[tile.tile_id] = row.astype(np.float32)
            for index, reason in result.errors.items():
                self.errors[todo[index].tile_id] = reason
        return {t.tile_id: self._emb[t.tile_id] for t in tiles if t.tile_id in self._emb}
