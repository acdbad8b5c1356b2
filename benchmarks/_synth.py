"""Cached synthetic slides for benchmarks (written once per size/mpp/seed)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pathgen.slides import write_synthetic_slide


def cached_synthetic_slide(
    width: int, height: int, mpp: float | None = 0.25, seed: int = 0, cache_dir: Path | None = None
) -> Path:
    """Path of a synthetic slide of this size, written into ``cache_dir`` if missing."""
    folder = cache_dir or Path(tempfile.gettempdir()) / "pathgen-bench"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"synth_{width}x{height}_{mpp if mpp is not None else 'nompp'}_s{seed}.tiff"
    path = folder / name
    if not path.exists():
        start = time.perf_counter()
        tmp = path.with_suffix(".tmp.tiff")
        write_synthetic_slide(tmp, width, height, mpp=mpp, seed=seed)
        tmp.rename(path)
        print(f"wrote {path} in {time.perf_counter() - start:.1f}s", flush=True)
    return path
