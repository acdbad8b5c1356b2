"""Deterministic, resumable tar shards.

A shard is complete only once fully written: it is written to ``NAME.tmp``, fsynced and
renamed. ``_export_state.json`` records, per shard, the hash of its planned content and
the sha256 of the file written, so a resumed export keeps complete shards whose plan is
unchanged and redoes everything else. Tar headers carry no time, owner or mode from the
machine, so the same content always gives the same bytes.

Example::

    state = ExportState.load(out_dir)
    if not state.is_complete(out_dir, "00000.tar", plan_hash):
        write_shard(out_dir, "00000.tar", members)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "_export_state.json"
STATE_FORMAT = 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def tar_member(name: str, size: int) -> tarfile.TarInfo:
    """A tar header that depends only on ``name`` and ``size``."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_shard(out_dir: Path, name: str, members: Iterable[tuple[str, bytes]]) -> str:
    """Write ``members`` (``(name, bytes)``, in order) as ``out_dir/name``; returns its sha256."""
    final = out_dir / name
    tmp = out_dir / (name + ".tmp")
    with tmp.open("wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for member, data in members:
                tar.addfile(tar_member(member, len(data)), io.BytesIO(data))
        fh.flush()
        os.fsync(fh.fileno())
    sha = file_sha256(tmp)
    os.replace(tmp, final)
    _fsync_dir(out_dir)
    return sha


@dataclass
class ExportState:
    """The resumable state of one output folder (see the module docstring)."""

    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: Path) -> ExportState:
        """The saved state, or an empty one when absent or unreadable."""
        try:
            data = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            return cls()
        return cls(shards=dict(data.get("shards") or {}), scores=dict(data.get("scores") or {}))

    def save(self, out_dir: Path) -> None:
        data = {"format": STATE_FORMAT, "shards": self.shards, "scores": self.scores}
        write_atomic(out_dir / STATE_FILE, json.dumps(data, sort_keys=True, indent=1).encode())

    def is_complete(self, out_dir: Path, name: str, plan: str) -> bool:
        """True when ``name`` was fully written for the same ``plan`` and is unchanged on disk."""
        entry = self.shards.get(name)
        path = out_dir / name
        if not entry or entry.get("plan") != plan or not path.is_file():
            return False
        return entry.get("sha256") == file_sha256(path)

    def record(self, name: str, plan: str, count: int, sha256: str) -> None:
        self.shards[name] = {"plan": plan, "count": count, "sha256": sha256}
