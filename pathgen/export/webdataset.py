"""WebDataset export: ``00000.tar …`` shards of ``KEY.jpg`` / ``KEY.json`` / ``KEY.txt``.

Beside the shards: ``sizes.json`` (shard file name -> sample count, what open_clip's
``get_dataset_size`` reads, so training needs no ``--train-num-samples``),
``manifest.parquet`` (one row per sample) and ``_export_state.json`` (for resuming).

Samples are ordered by key and keys are stable (slide fingerprint and tile geometry),
JPEGs are encoded with fixed settings and tar headers carry no machine state, so
exporting the same run twice gives byte-identical shards; an interrupted export
resumes, keeping the shards it completed (see :mod:`pathgen.export.shards`).

Example::

    async with read_scope(engine) as session:
        samples = await load_samples(session, "run-1")
    result = write_webdataset(samples, Path("out"), WebDatasetOptions(shard_size=1000))
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from pathgen.errors import ExportError
from pathgen.export.samples import ExportSample
from pathgen.export.shards import ExportState, write_atomic, write_shard
from pathgen.slides import SlideCache, read_tile

if TYPE_CHECKING:
    from pathgen.embed.model import ClipModel

SIZES_FILE = "sizes.json"
MANIFEST_FILE = "manifest.parquet"
_SHARD_NAME = re.compile(r"^\d{5}\.tar$")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class WebDatasetOptions:
    shard_size: int = 1000
    min_clip_score: float | None = None
    jpeg_quality: int = 95
    workers: int = 4


@dataclass
class WebDatasetResult:
    out_dir: Path
    sizes: dict[str, int]
    samples: int
    written_shards: list[str] = field(default_factory=list)
    kept_shards: list[str] = field(default_factory=list)
    below_min_score: int = 0


def tile_image(cache: SlideCache, sample: ExportSample) -> Image.Image:
    """The sample's tile read back from its slide at the run's tile size."""
    return read_tile(cache.get(sample.slide_path), sample.x, sample.y, sample.size, sample.tile_px)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Deterministic JPEG bytes (fixed quality, 4:4:4, no optimisation pass, no metadata)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality, subsampling=0, optimize=False)
    return buf.getvalue()


def clip_scores(
    samples: Sequence[ExportSample],
    clip: ClipModel,
    pool: ThreadPoolExecutor,
    cache: SlideCache,
) -> list[float]:
    """Cosine similarity of each tile with its caption under ``clip``, in batches."""
    scores: list[float] = []
    step = max(1, clip.batch_size)
    for start in range(0, len(samples), step):
        batch = samples[start : start + step]
        images = list(pool.map(lambda s: tile_image(cache, s), batch))
        img = clip.encode_images(images)
        txt = clip.encode_texts([s.caption for s in batch])
        scores.extend(round(float(v), 6) for v in (img * txt).sum(axis=1))
    return scores


def _scores(
    samples: Sequence[ExportSample],
    clip: ClipModel,
    state: ExportState,
    pool: ThreadPoolExecutor,
    cache: SlideCache,
) -> dict[str, float]:
    """Scores by key, reusing those a previous (interrupted) export stored for the same model."""
    saved = state.scores.get("values", {}) if state.scores.get("model") == clip.fingerprint else {}
    scores: dict[str, float] = {}
    todo = []
    for s in samples:
        entry = saved.get(s.key)
        if entry is not None and entry[0] == s.revision_id:
            scores[s.key] = float(entry[1])
        else:
            todo.append(s)
    for s, value in zip(todo, clip_scores(todo, clip, pool, cache), strict=True):
        scores[s.key] = value
    state.scores = {
        "model": clip.fingerprint,
        "values": {s.key: [s.revision_id, scores[s.key]] for s in samples},
    }
    return scores


def _record(sample: ExportSample, score: float | None, model: str | None) -> dict[str, Any]:
    meta = sample.provenance()
    meta["clip_score"] = score
    meta["clip_model"] = model
    return meta


def _json_bytes(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _plan_hash(records: Sequence[tuple[ExportSample, bytes]], quality: int) -> str:
    digest = hashlib.sha256(f"pathgen-wds-1|jpeg{quality}".encode())
    for sample, meta in records:
        for part in (sample.key.encode(), sample.caption.encode(), meta):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def _clean(out_dir: Path, planned: set[str]) -> None:
    for path in out_dir.iterdir():
        stale_shard = _SHARD_NAME.match(path.name) and path.name not in planned
        if path.name.endswith(".tar.tmp") or stale_shard:
            path.unlink()


def write_webdataset(
    samples: Sequence[ExportSample],
    out_dir: Path,
    options: WebDatasetOptions = WebDatasetOptions(),
    *,
    clip: ClipModel | None = None,
    cache: SlideCache | None = None,
    progress: Progress | None = None,
) -> WebDatasetResult:
    """Write ``samples`` (already filtered for review state) as WebDataset shards in ``out_dir``.

    With ``clip``, every sample's image–caption cosine similarity is stored in its
    ``.json`` and the manifest; ``options.min_clip_score`` (which needs ``clip``) drops
    samples below it. Raises :class:`ExportError` on bad options.
    """
    if options.shard_size < 1:
        raise ExportError(f"--shard-size must be at least 1, not {options.shard_size}")
    if options.min_clip_score is not None and clip is None:
        raise ExportError("--min-clip-score needs a CLIP model (settings.model)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = cache or SlideCache()
    state = ExportState.load(out_dir)
    model = clip.fingerprint if clip is not None else None
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        scores: dict[str, float] = {}
        if clip is not None:
            scores = _scores(samples, clip, state, pool, cache)
            state.save(out_dir)
        kept = [
            s
            for s in samples
            if options.min_clip_score is None or scores[s.key] >= options.min_clip_score
        ]
        records = [(s, _json_bytes(_record(s, scores.get(s.key), model))) for s in kept]
        shards = [
            records[i : i + options.shard_size] for i in range(0, len(records), options.shard_size)
        ]
        names = [f"{i:05d}.tar" for i in range(len(shards))]
        _clean(out_dir, set(names))
        state.shards = {n: e for n, e in state.shards.items() if n in names}
        result = WebDatasetResult(
            out_dir=out_dir,
            sizes={n: len(s) for n, s in zip(names, shards, strict=True)},
            samples=len(kept),
            below_min_score=len(samples) - len(kept),
        )
        for done, (name, shard) in enumerate(zip(names, shards, strict=True), start=1):
            plan = _plan_hash(shard, options.jpeg_quality)
            if state.is_complete(out_dir, name, plan):
                result.kept_shards.append(name)
            else:
                jpegs = pool.map(
                    lambda s: encode_jpeg(tile_image(cache, s), options.jpeg_quality),
                    [s for s, _ in shard],
                )
                members = []
                for (sample, meta), jpeg in zip(shard, jpegs, strict=True):
                    members += [
                        (f"{sample.key}.jpg", jpeg),
                        (f"{sample.key}.json", meta),
                        (f"{sample.key}.txt", sample.caption.encode()),
                    ]
                state.record(name, plan, len(shard), write_shard(out_dir, name, members))
                state.save(out_dir)
                result.written_shards.append(name)
            if progress is not None:
                progress(name, done, len(names))
    write_atomic(out_dir / SIZES_FILE, json.dumps(result.sizes, indent=1).encode())
    write_manifest(out_dir / MANIFEST_FILE, names, shards, scores)
    state.save(out_dir)
    return result


def write_manifest(
    path: Path,
    names: Sequence[str],
    shards: Sequence[Sequence[tuple[ExportSample, bytes]]],
    scores: dict[str, float],
) -> None:
    """One Parquet row per exported sample."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [(name, s) for name, shard in zip(names, shards, strict=True) for s, _ in shard]
    table = pa.table(
        {
            "key": pa.array([s.key for _, s in rows], pa.string()),
            "shard": pa.array([n for n, _ in rows], pa.string()),
            "tile_id": pa.array([s.tile_id for _, s in rows], pa.int64()),
            "run_id": pa.array([s.run_id for _, s in rows], pa.string()),
            "slide": pa.array([s.slide_path for _, s in rows], pa.string()),
            "slide_fingerprint": pa.array([s.slide_fingerprint for _, s in rows], pa.string()),
            "label": pa.array([s.label for _, s in rows], pa.string()),
            "x": pa.array([s.x for _, s in rows], pa.int64()),
            "y": pa.array([s.y for _, s in rows], pa.int64()),
            "size": pa.array([s.size for _, s in rows], pa.int64()),
            "mpp": pa.array([s.mpp for _, s in rows], pa.float64()),
            "tile_px": pa.array([s.tile_px for _, s in rows], pa.int64()),
            "caption": pa.array([s.caption for _, s in rows], pa.string()),
            "caption_revision_id": pa.array([s.revision_id for _, s in rows], pa.int64()),
            "caption_stage": pa.array([s.stage for _, s in rows], pa.string()),
            "review": pa.array([s.review for _, s in rows], pa.string()),
            "reviewer": pa.array([s.reviewer for _, s in rows], pa.string()),
            "revision_ids": pa.array(
                [[r["id"] for r in s.chain] for _, s in rows], pa.list_(pa.int64())
            ),
            "revision_stages": pa.array(
                [[r["stage"] for r in s.chain] for _, s in rows], pa.list_(pa.string())
            ),
            "clip_score": pa.array([scores.get(s.key) for _, s in rows], pa.float64()),
        }
    )
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    write_atomic(path, buf.getvalue().to_pybytes())
