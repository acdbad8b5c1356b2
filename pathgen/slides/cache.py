"""A bounded, thread-safe LRU cache of open slides.

Later stages (embedding, captioning, export, web thumbnails) read many tiles from
the same slides; reopening a slide per tile is very slow, so they share readers
through a :class:`SlideCache`.

Evicted readers are not closed explicitly: another thread may still be reading
from one, and each reader's file is closed when the last reference goes away.

Example::

    cache = SlideCache(max_open=16)
    img = read_tile(cache.get("a.svs"), x, y, size_l0, out_px)
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from pathgen.slides.base import SlideReader
from pathgen.slides.readers import open_slide


class SlideCache:
    """LRU cache mapping a slide path to its open :class:`SlideReader`."""

    def __init__(self, max_open: int = 16) -> None:
        if max_open < 1:
            raise ValueError(f"SlideCache max_open must be >= 1, got {max_open}")
        self.max_open = max_open
        self._readers: OrderedDict[str, SlideReader] = OrderedDict()
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}

    def get(self, path: str | os.PathLike[str]) -> SlideReader:
        """Return the open reader for ``path``, opening it once if needed.

        Raises :class:`~pathgen.errors.SlideError` when the slide cannot be opened.
        """
        key = os.path.abspath(os.fspath(path))
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # one thread opens a given slide; others wait for it
            with self._lock:
                reader = self._readers.get(key)
                if reader is not None:
                    self._readers.move_to_end(key)
                    return reader
            try:
                reader = open_slide(path)
            except BaseException:
                with self._lock:
                    self._opening.pop(key, None)
                raise
            with self._lock:
                self._opening.pop(key, None)
                self._readers[key] = reader
                while len(self._readers) > self.max_open:
                    self._readers.popitem(last=False)
            return reader

    def __len__(self) -> int:
        with self._lock:
            return len(self._readers)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str | os.PathLike):
            return False
        with self._lock:
            return os.path.abspath(os.fspath(path)) in self._readers

    def clear(self) -> None:
        """Forget every cached reader (handles close once no thread uses them)."""
        with self._lock:
            self._readers.clear()
