"""Embed every tissue tile of a slide, overlapping tile reads with forward passes.

Reader threads read, decode and preprocess tiles (PIL and torchvision release the GIL)
into a bounded window of pending results; the calling thread batches them in tile order
and runs the model under ``torch.inference_mode``. A tile whose read fails gets no
embedding and is reported in :attr:`TileEmbeddings.errors`; the slide goes on.

Example::

    result = embed_tiles(clip, tiles, lambda t: read_tile(reader, t.x, t.y, t.size, 336))
    save_embeddings(path, [t.id for t in result.select(tiles)], result.embeddings, clip.fingerprint)
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from pathgen.embed.model import ClipModel

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class TileEmbeddings:
    """Embeddings of the tiles that could be read, in input order.

    ``embeddings[j]`` belongs to the ``j``-th tile whose ``ok`` flag is set.
    """

    embeddings: np.ndarray  # (n_ok, D) float16, unit norm
    ok: np.ndarray  # (N,) bool over the input tiles
    errors: dict[int, str] = field(default_factory=dict)  # input index -> reason

    @property
    def failed(self) -> list[int]:
        """Input indices of the tiles that got no embedding."""
        return sorted(self.errors)

    def select(self, items: Sequence[T]) -> list[T]:
        """The entries of ``items`` (parallel to the input tiles) that have an embedding."""
        return [item for item, good in zip(items, self.ok, strict=True) if good]


def _load(
    clip: ClipModel, read: Callable[[T], Image.Image], tile: T
) -> torch.Tensor | BaseException:
    try:
        image = read(tile)
        return clip.preprocess(image.convert("RGB") if image.mode != "RGB" else image)
    except Exception as exc:  # one bad tile must not stop the slide
        return exc


def embed_tiles(
    clip: ClipModel,
    tiles: Sequence[T],
    read: Callable[[T], Image.Image],
    batch_size: int | None = None,
    reader_threads: int = 2,
) -> TileEmbeddings:
    """Embed ``tiles`` (read by ``read``) with ``clip``; rows follow the order of ``tiles``."""
    batch_size = batch_size or clip.batch_size
    n = len(tiles)
    out = np.zeros((n, clip.embed_dim), dtype=np.float16)
    ok = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}
    window = 2 * batch_size + reader_threads  # bounded read-ahead
    pin = clip.device.type == "cuda"

    batch: list[torch.Tensor] = []
    batch_idx: list[int] = []
    pending: tuple[list[int], torch.Tensor] | None = None  # device result not yet copied

    def flush_pending() -> None:
        nonlocal pending
        if pending is not None:
            idx, feats = pending
            out[idx] = feats.cpu().numpy().astype(np.float16)
            ok[idx] = True
            pending = None

    def run_batch() -> None:
        nonlocal pending
        pixels = torch.stack(batch)
        if pin:
            pixels = pixels.pin_memory()
        feats = clip.encode_batch(pixels)  # asynchronous on GPU
        flush_pending()
        pending = (list(batch_idx), feats)
        batch.clear()
        batch_idx.clear()

    with ThreadPoolExecutor(reader_threads, thread_name_prefix="pathgen-tile-read") as pool:
        futures: deque[Future[torch.Tensor | BaseException]] = deque()
        submitted = 0
        for i in range(n):
            while submitted < n and submitted < i + window:
                futures.append(pool.submit(_load, clip, read, tiles[submitted]))
                submitted += 1
            item = futures.popleft().result()
            if isinstance(item, BaseException):
                errors[i] = f"{type(item).__name__}: {item}"
                log.warning("tile %d (%r) not embedded: %s", i, tiles[i], errors[i])
                continue
            batch.append(item)
            batch_idx.append(i)
            if len(batch) == batch_size:
                run_batch()
        if batch:
            run_batch()
        flush_pending()
    return TileEmbeddings(embeddings=out[ok], ok=ok, errors=errors)
