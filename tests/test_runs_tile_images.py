"""Tile images for the VLM stages: one read and encode per tile, bounded cache, off the loop."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

from pathgen.runs.tile_images import TileImages
from pathgen.slides import SlideCache, write_synthetic_slide


async def test_a_tile_is_read_once_for_all_its_calls_and_the_cache_is_bounded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.tiff"
    write_synthetic_slide(path, 2048, 2048, mpp=0.5, seed=3)
    slides = SlideCache(max_open=2)
    sizes = []  # the JPEG bytes of 5 tiles, learnt with an unbounded cache
    probe = TileImages(slides, threads=2)
    for i in range(5):
        sizes.append(len((await probe.get(str(path), 336 * i, 336, 336, 336, max_side=672)).jpeg))
    probe.close()
    # Room for tiles 1-4 and not one byte more: reading 0..4 evicts tile 0 only.
    images = TileImages(slides, threads=2, max_bytes=sum(sizes[1:]))
    loop_thread = threading.get_ident()
    readers: set[int] = set()
    encode = images._encode

    def spy(key):  # noqa: ANN001, ANN202 - records which thread reads
        readers.add(threading.get_ident())
        return encode(key)

    images._encode = spy  # type: ignore[method-assign]
    try:
        same = await asyncio.gather(
            *(images.get(str(path), 0, 0, 336, 336, max_side=672) for _ in range(8))
        )
        assert images.reads == 1 and all(p is same[0] for p in same)
        assert same[0].jpeg[:2] == b"\xff\xd8" and loop_thread not in readers
        for i in [0, 1, 2, 3, 4, 4, 3, 2, 1]:  # 5 new tiles, then the 4 kept ones again
            await images.get(str(path), 336 * i, 336, 336, 336, max_side=672)
        assert images.reads == 6 and len(images._cache) == 4
        assert images._bytes == sum(sizes[1:]) <= images.max_bytes
        again = await images.get(str(path), 0, 0, 336, 336, max_side=672)
        assert images.reads == 7 and again.jpeg == same[0].jpeg  # evicted, read again
    finally:
        images.close()


async def test_processes_of_a_run_share_encoded_tiles_through_a_folder(tmp_path: Path) -> None:
    """What one process encoded another finds in the shared folder instead of reading the
    slide; each deletes the oldest files it wrote beyond its bound."""
    path = tmp_path / "s.tiff"
    write_synthetic_slide(path, 2048, 2048, mpp=0.5, seed=4)
    shared = tmp_path / "tiles"
    shared.mkdir()
    first = TileImages(SlideCache(max_open=2), threads=2, shared_dir=shared)
    second = TileImages(SlideCache(max_open=2), threads=2, shared_dir=shared)
    try:
        made = await first.get(str(path), 0, 0, 336, 336, max_side=672)
        found = await second.get(str(path), 0, 0, 336, 336, max_side=672)
        assert (first.reads, second.reads, second.shared_hits) == (1, 0, 1)
        assert found.jpeg == made.jpeg
        assert [f.suffix for f in shared.iterdir()] == [".jpg"]  # no temporary file left
        first.max_bytes = len(made.jpeg)  # room for one tile: the older file goes
        await first.get(str(path), 336, 0, 336, 336, max_side=672)
        assert len(list(shared.iterdir())) == 1 and first.reads == 2
        shutil.rmtree(shared)  # the run ended under a slow call: the part still comes back
        late = await second.get(str(path), 672, 0, 336, 336, max_side=672)
        assert late.jpeg[:2] == b"\xff\xd8" and second.reads == 1
    finally:
        first.close()
        second.close()
