"""The tiling stage: slide → tissue mask → tile grid → validated tiles.

Example::

    params = TilingParams(mpp=0.5, tile_size=336)
    result = tile_slide("slide.svs", params)
    for outcome in tile_slides(["a.svs", "b.ndpi"], params, workers=2):
        print(outcome.path, outcome.status, outcome.reason)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pathgen.errors import SlideError
from pathgen.slides.base import Bounds, SlideReader
from pathgen.slides.fingerprint import fingerprint_slide
from pathgen.slides.grid import TileSpec, axis_starts, build_grid
from pathgen.slides.mpp import MppSource, resolve_mpp
from pathgen.slides.reader import read_tile
from pathgen.slides.readers import open_slide
from pathgen.slides.tissue import TissueMask, TissueParams, detect_tissue

#: Bump when the tiling algorithm changes in a way that changes its output.
#: 2: tissue is detected on the pyramid level nearest ``detection_mpp`` as it is when one
#: lies within 1.5x of it (was: always resized to exactly ``detection_mpp``).
#: 3: Otsu's threshold is taken on a 5x5 median when ``median_blur`` is wider (the mask
#: itself is still the exact wider median's).
TILING_VERSION = 3

#: A slide is "corrupt" when more than this fraction of its kept tiles cannot be read.
CORRUPT_FRACTION = 0.5

#: Tiles per unit of work handed to a reader thread (keeps neighbours together).
CHUNK = 16

#: Rows of stored tiles a slide opened for the read pass keeps decoded, so a pass in
#: row order decodes each stored tile once.
CACHE_ROWS = 3

SlideInput = str | os.PathLike[str] | tuple[str | os.PathLike[str], float | None]


@dataclass(frozen=True)
class TilingParams:
    """Everything that determines a slide's tiles; ``params_hash()`` identifies it."""

    mpp: float = 0.5
    tile_size: int = 336
    min_tissue: float = 0.5
    assume_mpp: float | None = None
    tissue: TissueParams = field(default_factory=TissueParams)

    def __post_init__(self) -> None:
        if self.mpp <= 0 or self.tile_size < 1 or not 0 <= self.min_tissue <= 1:
            raise ValueError(
                f"invalid tiling parameters: mpp={self.mpp} (> 0), tile_size={self.tile_size} "
                f"(>= 1), min_tissue={self.min_tissue} (0..1)"
            )

    @classmethod
    def from_settings(cls, settings: Any) -> TilingParams:
        """Build from ``pathgen.settings.TilingSettings``."""
        return cls(
            mpp=float(settings.mpp),
            tile_size=int(settings.tile_size),
            min_tissue=float(settings.min_tissue),
            assume_mpp=None if settings.assume_mpp is None else float(settings.assume_mpp),
            tissue=TissueParams.from_settings(settings.tissue),
        )

    def params_hash(self) -> str:
        """Stable 16-hex-digit hash of the parameters and the algorithm version."""
        data = {"version": TILING_VERSION, **asdict(self)}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SlideInfo:
    """What the tiling stage learned about a slide."""

    path: str
    reader: str
    vendor: str
    width: int
    height: int
    level_count: int
    mpp: float
    mpp_source: MppSource
    fingerprint: str
    bounds: Bounds


@dataclass(frozen=True, eq=False)
class TilingResult:
    """Kept tiles of one slide, the tiles that failed to read and the tissue mask.

    ``grid_cells`` counts every cell of the grid over the scanned area; ``tiles`` are the
    cells with enough tissue whose pixels could be read, ``failed_tiles`` those that
    could not.
    """

    slide: SlideInfo
    params: TilingParams
    tiles: list[TileSpec]
    failed_tiles: list[TileSpec]
    grid_cells: int
    tissue: TissueMask
    seconds: float

    @property
    def params_hash(self) -> str:
        """Hash of the parameters the slide was tiled with."""
        return self.params.params_hash()

    @property
    def n_failed(self) -> int:
        """Number of tiles dropped because their pixels could not be read."""
        return len(self.failed_tiles)


@dataclass(frozen=True, eq=False)
class TilingOutcome:
    """Result of one slide in :func:`tile_slides`: ``tiled`` with a result, or ``failed``."""

    path: str
    status: Literal["tiled", "failed"]
    result: TilingResult | None = None
    reason: str | None = None
    message: str | None = None


class _Handle:
    """The shared reader of a slide, reopened after a read error (OpenSlide errors stick)."""

    def __init__(self, reader: SlideReader, cache_level: int | None, max_failures: int) -> None:
        self.reader = reader
        self.cache_level = cache_level
        self.max_failures = max_failures
        self.failures = 0
        self._lock = threading.Lock()

    def reopen(self, failed: SlideReader) -> None:
        with self._lock:
            if self.reader is failed:
                reader = open_slide(failed.path)
                if self.cache_level is not None:
                    reader.cache_rows(self.cache_level, CACHE_ROWS)
                self.reader = reader

    def record_failure(self) -> bool:
        """Count a failed tile; True once there are too many to go on."""
        with self._lock:
            self.failures += 1
            return self.failures > self.max_failures


def _validate_chunk(handle: _Handle, chunk: list[TileSpec]) -> list[TileSpec]:
    """Read each tile; a failed read is confirmed on a private, freshly opened handle.

    A read error puts an OpenSlide handle in a permanent error state, so a tile read
    by another thread at the same time may fail although it is sound: the shared
    handle is replaced and only a tile that also fails on its own handle counts.
    """
    failed: list[TileSpec] = []
    for t in chunk:
        reader = handle.reader
        try:
            read_tile(reader, t.x, t.y, t.size_l0, t.out_px)
            continue
        except Exception:
            handle.reopen(reader)
        try:
            read_tile(open_slide(reader.path), t.x, t.y, t.size_l0, t.out_px)
        except Exception:
            failed.append(t)
            if handle.record_failure():
                break  # the slide is corrupt: no need to read the rest
    return failed


def _validate(
    reader: SlideReader, tiles: list[TileSpec], threads: int, cache_level: int | None
) -> list[TileSpec]:
    if cache_level is not None:
        reader.cache_rows(cache_level, CACHE_ROWS)
    handle = _Handle(reader, cache_level, int(CORRUPT_FRACTION * len(tiles)))
    if threads <= 1 or len(tiles) <= CHUNK:
        return _validate_chunk(handle, tiles)
    chunks = [tiles[i : i + CHUNK] for i in range(0, len(tiles), CHUNK)]
    with ThreadPoolExecutor(threads, thread_name_prefix="tile-read") as pool:
        return [t for part in pool.map(lambda c: _validate_chunk(handle, c), chunks) for t in part]


def tile_slide(
    path: str | os.PathLike[str],
    params: TilingParams,
    manifest_mpp: float | None = None,
    *,
    threads: int = 1,
    reader: SlideReader | None = None,
    verify: bool = False,
) -> TilingResult:
    """Find the slide's tissue and the grid tiles that hold enough of it.

    With ``verify`` every kept tile is also read once, with ``threads`` concurrent
    readers, and tiles whose pixels cannot be decoded are dropped (``failed_tiles``);
    without it no tile is decoded here (the embedding stage reads every tile anyway and
    drops unreadable ones). A ``reader`` passed in (e.g. from a :class:`SlideCache`) is
    used as is; a slide opened here for a read pass keeps a few rows of decoded tiles.

    Raises :class:`SlideError` with reason ``missing``, ``unsupported``, ``no_mpp``,
    ``too_small``, ``no_tissue`` or ``corrupt``; once the slide is open the error names
    its reader (``SlideError.reader``).
    """
    start = time.perf_counter()
    own_reader = reader is None
    reader = reader or open_slide(path)
    try:
        return _tile_open_slide(
            reader, str(path), params, manifest_mpp, start, threads, verify, own_reader
        )
    except SlideError as exc:
        exc.reader = exc.reader or reader.name
        raise


def _tile_open_slide(
    reader: SlideReader,
    name: str,
    params: TilingParams,
    manifest_mpp: float | None,
    start: float,
    threads: int,
    verify: bool,
    own_reader: bool,
) -> TilingResult:
    mpp, source = resolve_mpp(reader, manifest_mpp, params.assume_mpp)
    bounds = reader.bounds
    step = params.tile_size * params.mpp / mpp
    if bounds.width < step or bounds.height < step:
        raise SlideError(
            name,
            "too_small",
            f"scanned area {bounds.width}x{bounds.height} px at {mpp:.3g} µm/px is smaller "
            f"than one {params.tile_size} px tile at {params.mpp} µm/px ({step:.0f} px)",
        )
    fingerprint = fingerprint_slide(name, reader.properties)
    try:
        tissue = detect_tissue(reader, mpp, params.tissue)
    except SlideError as exc:
        raise SlideError(name, "corrupt", f"cannot read the low-resolution image: {exc}") from exc
    if not tissue.mask.any():
        raise SlideError(
            name,
            "no_tissue",
            f"no tissue found (saturation threshold {tissue.threshold}); lower "
            "tiling.tissue.saturation_floor if the slide is faint",
        )
    grid = build_grid(reader, tissue, mpp, params.mpp, params.tile_size, params.min_tissue, bounds)
    if not grid:
        raise SlideError(
            name,
            "no_tissue",
            f"tissue covers {100 * tissue.mask.mean():.1f}% of the slide but no tile has "
            f">= {params.min_tissue:.0%} tissue; lower tiling.min_tissue",
        )
    failed: list[TileSpec] = []
    if verify:
        cache_level = grid[0].read_level if own_reader else None
        failed = _validate(reader, grid, threads, cache_level)
    if len(failed) > CORRUPT_FRACTION * len(grid):
        raise SlideError(
            name,
            "corrupt",
            f"{len(failed)} of {len(grid)} tiles cannot be read: the file is damaged",
        )
    bad = set(failed)
    tiles = [t for t in grid if t not in bad] if bad else grid
    info = SlideInfo(
        path=name,
        reader=reader.name,
        vendor=reader.vendor,
        width=reader.width,
        height=reader.height,
        level_count=reader.level_count,
        mpp=mpp,
        mpp_source=source,
        fingerprint=fingerprint,
        bounds=bounds,
    )
    return TilingResult(
        slide=info,
        params=params,
        tiles=tiles,
        failed_tiles=failed,
        grid_cells=len(axis_starts(bounds.x, bounds.width, step))
        * len(axis_starts(bounds.y, bounds.height, step)),
        tissue=tissue,
        seconds=time.perf_counter() - start,
    )


def _outcome(item: SlideInput, params: TilingParams, threads: int, verify: bool) -> TilingOutcome:
    path, manifest_mpp = item if isinstance(item, tuple) else (item, None)
    try:
        result = tile_slide(path, params, manifest_mpp, threads=threads, verify=verify)
    except SlideError as exc:
        return TilingOutcome(str(path), "failed", reason=exc.reason, message=str(exc))
    except Exception as exc:  # one bad slide must not stop the others
        msg = f"{path}: unexpected {type(exc).__name__}: {exc}"
        return TilingOutcome(str(path), "failed", reason="error", message=msg)
    return TilingOutcome(str(path), "tiled", result=result)


def tile_slides(
    inputs: Iterable[SlideInput],
    params: TilingParams,
    workers: int = 2,
    *,
    threads: int = 1,
    verify: bool = False,
) -> Iterator[TilingOutcome]:
    """Tile many slides, ``workers`` at a time, yielding outcomes as they complete.

    ``inputs`` holds paths or ``(path, manifest_mpp)`` pairs and is consumed lazily; at
    most ``workers`` slides are in flight, so memory stays bounded however many there
    are; ``threads`` and ``verify`` go to :func:`tile_slide`. A failing slide yields a
    ``failed`` outcome with its reason and never stops the others.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="tile-slide")
    pending: set[Future[TilingOutcome]] = set()
    try:
        for item in inputs:
            pending.add(pool.submit(_outcome, item, params, threads, verify))
            if len(pending) >= workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
