"""Per-slide embedding files: ``<data_dir>/embeddings/<model>/<slide>.npz``, float16.

Files are written atomically (temporary file, then rename), so a file that exists is
complete. Needs numpy only.

Example::

    path = embedding_path(data_dir, clip.fingerprint, "case-001")
    save_embeddings(path, tile_ids, emb, clip.fingerprint)
    tile_ids, emb, fingerprint = load_embeddings(path)
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from pathgen.errors import StoreError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str, limit: int = 80) -> str:
    cleaned = _UNSAFE.sub("_", text).strip("._") or "x"
    return cleaned[:limit]


def fingerprint_dir(fingerprint: str) -> str:
    """Directory name for a model fingerprint: readable prefix plus a short hash."""
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return f"{_safe(fingerprint.split(':', 1)[0], 40)}-{digest}"


def embedding_path(data_dir: str | os.PathLike[str], fingerprint: str, slide_key: str) -> Path:
    """Where the embeddings of ``slide_key`` under the model ``fingerprint`` live."""
    digest = hashlib.sha256(slide_key.encode()).hexdigest()[:8]
    name = f"{_safe(slide_key)}-{digest}.npz"
    return Path(data_dir) / "embeddings" / fingerprint_dir(fingerprint) / name


def save_embeddings(
    path: str | os.PathLike[str],
    tile_ids: np.ndarray | list[int],
    emb: np.ndarray,
    fingerprint: str,
) -> Path:
    """Write ``tile_ids`` (int64) and ``emb`` (stored float16) atomically; returns the path."""
    ids = np.asarray(tile_ids, dtype=np.int64)
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != ids.shape[0]:
        raise ValueError(f"need one embedding row per tile id: {emb.shape} vs {ids.shape}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                tile_ids=ids,
                emb=emb.astype(np.float16, copy=False),
                fingerprint=np.array(fingerprint),
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_embeddings(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Read ``(tile_ids int64, emb float16 (N, D), fingerprint)`` from :func:`save_embeddings`."""
    file = Path(path)
    try:
        with np.load(file, allow_pickle=False) as data:
            ids = data["tile_ids"]
            emb = data["emb"]
            fingerprint = str(data["fingerprint"])
    except FileNotFoundError:
        raise StoreError(f"{file}: embeddings file missing; re-run the embed stage") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StoreError(
            f"{file}: embeddings file unreadable ({exc}); delete it and re-run the embed stage"
        ) from None
    return ids, emb, fingerprint
