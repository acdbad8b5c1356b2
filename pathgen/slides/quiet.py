"""Keep slide libraries' own chatter off the terminal while a slide is opened.

On a corrupt or unusual file, the libraries the readers try print warnings of their own
before they fail or give up: tifffile logs "<TiffFile 'x.tif'> contains no pages", PIL
warns "Corrupt EXIF data", pydicom "End of file reached before delimiter". A user tiling
a folder should see pathgen's one error per slide, which names the slide and each
reader tried, not that noise. Inside :func:`library_noise`, warnings and the records of
the libraries' loggers (:data:`LIBRARY_LOGGERS`) raised *by this thread* are collected
instead of printed; other threads, pathgen's own loggers and exceptions are untouched.

Python's warning and logging switches are process-wide, so this is done per thread: a
``warnings.showwarning`` hook and a logging filter, both installed on first use, that
pass everything through unless the calling thread is inside :func:`library_noise`.
OpenSlide reports libtiff's problems in its own error (part of pathgen's message), and
writes nothing to the terminal itself.

Example::

    with library_noise() as heard:
        reader = opener(path)
    log.debug("%s: %s", path, heard)
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Top-level logger names of the slide libraries (their sub-loggers are included).
LIBRARY_LOGGERS = ("tifffile", "PIL", "pydicom", "wsidicom", "openslide")


class _Heard(threading.local):
    """What the current thread's open :func:`library_noise` blocks collected."""

    def __init__(self) -> None:
        self.stack: list[list[str]] = []


_heard = _Heard()
_install_lock = threading.Lock()


def _keep(text: str) -> bool:
    """Add ``text`` to this thread's innermost block; False when there is none."""
    if not _heard.stack:
        return False
    _heard.stack[-1].append(text)
    return True


class _LibraryRecords(logging.Filter):
    """Drops a library's log record raised inside :func:`library_noise`, keeping its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _keep(f"{record.name}: {record.getMessage()}")


_FILTER = _LibraryRecords()


class _WarningHook:
    """``warnings.showwarning`` that keeps a warning raised inside :func:`library_noise`
    and passes any other to the hook it replaced."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if not _keep(f"{category.__name__}: {message}"):
            self.previous(message, category, filename, lineno, file, line)


def _install() -> None:
    """Put the hook and the filter in place (again, if something replaced them since:
    ``warnings.catch_warnings`` restores the hook it found)."""
    with _install_lock:
        if not isinstance(warnings.showwarning, _WarningHook):
            warnings.showwarning = _WarningHook(warnings.showwarning)
        names = set(LIBRARY_LOGGERS) | {
            name
            for name in list(logging.root.manager.loggerDict)
            if name.split(".", 1)[0] in LIBRARY_LOGGERS
        }
        for name in names:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)


@contextmanager
def library_noise() -> Iterator[list[str]]:
    """Collect, instead of printing, the warnings and slide-library log records this
    thread raises inside the block; yields the list they are added to (``"Category:
    text"`` or ``"logger: text"``). Exceptions pass through unchanged."""
    _install()
    heard: list[str] = []
    _heard.stack.append(heard)
    try:
        yield heard
    finally:
        _heard.stack.pop()
