"""Cheap content fingerprint of a slide.

The fingerprint is the SHA-256 (hex) of:

* the size, first 1 MiB and last 1 MiB of the file that was opened;
* for multi-file formats, the names and sizes of the sibling files: every ``.dcm``
  file in a DICOM file's directory (a series folder stands for its first ``.dcm``
  file), and every file in an MRXS slide's data directory (``slide/`` beside
  ``slide.mrxs``) — their contents are not read;
* OpenSlide's vendor, level-0 dimensions, level count and ``openslide.quickhash-1``
  (OpenSlide's own hash of the lowest-resolution level and properties), when given.

It does not cover the bytes in the middle of large files (changes there that keep
the size, header, tail and quickhash are not seen) nor the file's name or location:
a renamed or moved slide keeps its fingerprint.

Example::

    digest = fingerprint_slide("slide.svs", reader.properties)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

CHUNK = 1 << 20

_PROPS = ("openslide.vendor", "openslide.level-count", "openslide.quickhash-1")


def _siblings(path: Path, vendor: str | None) -> list[Path]:
    if vendor == "dicom" or path.suffix.lower() == ".dcm":
        return sorted(p for p in path.parent.glob("*") if p.suffix.lower() == ".dcm")
    if vendor == "mirax" or path.suffix.lower() == ".mrxs":
        data_dir = path.with_suffix("")
        if data_dir.is_dir():
            return sorted(p for p in data_dir.iterdir() if p.is_file())
    return []


def fingerprint_slide(
    path: str | os.PathLike[str], properties: Mapping[str, str] | None = None
) -> str:
    """Return the hex SHA-256 fingerprint of the slide at ``path`` (see module docstring)."""
    p = Path(path)
    if p.is_dir():  # a DICOM series folder: its first file stands for it
        p = min((f for f in p.iterdir() if f.suffix.lower() == ".dcm"), default=p)
    props = properties or {}
    h = hashlib.sha256()
    size = p.stat().st_size
    h.update(f"size={size}\n".encode())
    with p.open("rb") as fh:
        h.update(fh.read(CHUNK))
        if size > CHUNK:
            fh.seek(max(CHUNK, size - CHUNK))
            h.update(fh.read(CHUNK))
    for sib in _siblings(p, props.get("openslide.vendor")):
        h.update(f"file={sib.name}:{sib.stat().st_size}\n".encode())
    for key in _PROPS:
        h.update(f"{key}={props.get(key, '')}\n".encode())
    for key in ("openslide.level[0].width", "openslide.level[0].height"):
        h.update(f"{key}={props.get(key, '')}\n".encode())
    return h.hexdigest()
