"""Tile images for the VLM stages: read and JPEG-encoded once per tile, off the event loop.

A tile is sent by several calls (describe, revise of the description, revise of each
degraded copy). :class:`TileImages` reads it from its slide (open readers shared through
a :class:`~pathgen.slides.SlideCache`) and encodes it in a small thread pool of its own
(slide decoding and JPEG encoding release the GIL, so they use the other cores while the
event loop schedules calls), and keeps the encoded part in an LRU cache bounded in bytes
for the calls that follow. Concurrent requests for the same tile share one read.

The bound is in bytes, not tiles, and generous (:data:`CACHE_BYTES`): the revise calls of a
tile come after those of every tile described meanwhile, so the cache must span that lag
(thousands of tiles when the client is busy: at 1,024 tiles, 2.15 reads per tile were
measured on ``bench_pipeline``).

The processes of one run on one machine (``pathgen run`` and its caption processes) share
their encoded tiles through ``shared_dir``: each encoded tile is also written there (one
file per tile, renamed into place whole), a process that misses its own cache looks there
before reading the slide, and each process deletes the oldest files it wrote beyond
``max_bytes``.

Example::

    images = TileImages(SlideCache(max_open=16), threads=4)
    part = await images.get(path, x, y, size, tile_px, max_side=672)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pathgen.llm.base import ImagePart
from pathgen.llm.images import encode_image
from pathgen.slides import SlideCache, read_tile

Key = tuple[str, int, int, int, int, int]

#: Default bound of the encoded tiles kept: 256 MiB (about 8,000 H&E tiles of 336 px at
#: JPEG quality 90).
CACHE_BYTES = 256 << 20


class TileImages:
    """Encoded tile images: bounded thread pool, byte-bounded cache, one read per tile."""

    def __init__(
        self,
        slides: SlideCache,
        *,
        threads: int = 4,
        max_bytes: int = CACHE_BYTES,
        shared_dir: Path | None = None,
    ) -> None:
        self.slides = slides
        self.max_bytes = max_bytes
        self.shared_dir = shared_dir
        self._bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tile-image")
        self._cache: OrderedDict[Key, ImagePart] = OrderedDict()
        self._pending: dict[Key, asyncio.Future[tuple[ImagePart, bool]]] = {}
        self._written: OrderedDict[Path, int] = OrderedDict()  # files of ``shared_dir``
        self._written_bytes = 0
        #: Tiles read from their slide and encoded here.
        self.reads = 0
        #: Tiles another process had encoded (found in ``shared_dir``).
        self.shared_hits = 0

    def _encode(self, key: Key) -> ImagePart:
        path, x, y, size, tile_px, max_side = key
        image = read_tile(self.slides.get(path), x, y, size, tile_px)
        return encode_image(image, max_side=max_side)

    def _file(self, key: Key) -> Path:
        assert self.shared_dir is not None
        return self.shared_dir / (hashlib.sha1(repr(key).encode()).hexdigest() + ".jpg")

    def _load(self, key: Key) -> tuple[ImagePart, bool]:
        """The tile's part (in a pool thread), and whether another process had made it."""
        if self.shared_dir is None:
            return self._encode(key), False
        file = self._file(key)
        try:
            return ImagePart(jpeg=file.read_bytes()), True
        except FileNotFoundError:
            pass
        part = self._encode(key)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(part.jpeg)
            os.replace(tmp, file)
        except OSError:  # a full or removed folder: this process still has the part
            tmp.unlink(missing_ok=True)
        return part, False

    def _wrote(self, key: Key, size: int) -> None:
        """Account for the file this process wrote; delete its oldest beyond the bound."""
        self._written[self._file(key)] = size
        self._written_bytes += size
        while self._written_bytes > self.max_bytes and len(self._written) > 1:
            file, old = self._written.popitem(last=False)
            self._written_bytes -= old
            file.unlink(missing_ok=True)

    async def get(
        self, path: str, x: int, y: int, size: int, tile_px: int, *, max_side: int
    ) -> ImagePart:
        """The tile at level-0 ``(x, y)`` of side ``size`` as a JPEG of at most ``max_side``."""
        key = (path, x, y, size, tile_px, max_side)
        part = self._cache.get(key)
        if part is not None:
            self._cache.move_to_end(key)
            return part
        pending = self._pending.get(key)
        if pending is not None:
            return (await asyncio.shield(pending))[0]
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._load, key)
        self._pending[key] = future
        try:
            part, shared = await asyncio.shield(future)
        finally:
            self._pending.pop(key, None)
        if shared:
            self.shared_hits += 1
        else:
            self.reads += 1
            if self.shared_dir is not None:
                self._wrote(key, len(part.jpeg))
        if key not in self._cache:
            self._cache[key] = part
            self._bytes += len(part.jpeg)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                self._bytes -= len(self._cache.popitem(last=False)[1].jpeg)
        return part

    def tile(self, row: Any, max_side: int) -> Any:
        """:meth:`get` for a tile row with ``slide_path``, ``x``, ``y``, ``size``, ``tile_px``."""
        return self.get(row.slide_path, row.x, row.y, row.size, row.tile_px, max_side=max_side)

    def close(self) -> None:
        """Forget the cache and let the threads finish."""
        self._cache.clear()
        self._bytes = 0
        self._pool.shutdown(wait=False, cancel_futures=True)
