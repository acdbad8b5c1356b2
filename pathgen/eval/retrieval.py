"""Image↔caption retrieval of CLIP checkpoints on a folder of WebDataset pairs.

The pairs are a ``pathgen export webdataset`` folder, typically the held-out slides that
``pathgen train-clip`` wrote to ``OUT/data/val``. Every image and caption is embedded;
recall@k is the share of queries whose answer is among the ``k`` most similar items:

* image→text: the gallery is the distinct caption texts; a hit is the image's own caption;
* text→image: each distinct caption queries all images; a hit is any image it was paired
  with.

Identical captions count as one text, so two tiles sharing a caption are both right
answers (with unique captions this is the usual one-positive recall).

Example::

    metrics = retrieval_eval(Path("out/data/val"), {"base": base, "trained": trained})
    metrics["checkpoints"]["trained"]["image_to_text"]["r@1"]
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pathgen.errors import ConfigError
from pathgen.eval.ranking import recall_at_k

if TYPE_CHECKING:
    from PIL import Image

    from pathgen.embed.model import ClipModel
    from pathgen.settings import ModelSettings

RECALL_KS = (1, 5, 10)


def _shards(folder: Path) -> list[Path]:
    try:
        sizes = json.loads((folder / "sizes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(
            "not a WebDataset folder with sizes.json (see `pathgen export webdataset`)",
            path=str(folder),
        ) from None
    return [folder / name for name in sorted(sizes)]


def iter_pairs(folder: Path) -> Iterator[tuple[str, Image.Image, str]]:
    """``(key, image, caption)`` for every sample of the folder's shards, in order."""
    from PIL import Image

    for shard in _shards(folder):
        with tarfile.open(shard) as tar:
            parts: dict[str, dict[str, bytes]] = {}
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member)
                parts.setdefault(key, {})[ext] = data.read() if data else b""
            for key, sample in parts.items():
                if "jpg" not in sample or "txt" not in sample:
                    raise ConfigError(f"sample {key} lacks its .jpg or .txt", path=str(shard))
                with Image.open(io.BytesIO(sample["jpg"])) as img:
                    image = img.convert("RGB")
                yield key, image, sample["txt"].decode("utf-8")


def embed_pairs(clip: ClipModel, folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unit-norm image and caption embeddings of every pair, and the captions."""
    images: list[np.ndarray] = []
    captions: list[str] = []
    batch: list[Image.Image] = []
    for _, image, caption in iter_pairs(folder):
        batch.append(image)
        captions.append(caption)
        if len(batch) == clip.batch_size:
            images.append(clip.encode_images(batch))
            batch = []
    if batch:
        images.append(clip.encode_images(batch))
    if not captions:
        raise ConfigError("the folder holds no pairs", path=str(folder))
    return np.concatenate(images), clip.encode_texts(captions), captions


def pair_recall(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    captions: Sequence[str],
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, dict[str, float | None]]:
    """Image→text and text→image recall@k of paired rows (see the module docstring)."""
    first_row: dict[str, int] = {}  # distinct caption -> its first row
    for row, text in enumerate(captions):
        first_row.setdefault(text, row)
    index = {text: i for i, text in enumerate(first_row)}
    unique_emb = np.asarray(text_emb, dtype=np.float32)[list(first_row.values())]
    targets = [index[text] for text in captions]
    img = np.asarray(image_emb, dtype=np.float32)
    i2t = recall_at_k(img @ unique_emb.T, targets, ks)
    sim = unique_emb @ img.T  # (texts, images)
    positives = np.zeros_like(sim, dtype=bool)
    positives[targets, np.arange(len(targets))] = True
    best = np.where(positives, sim, -np.inf).max(axis=1)
    ranks = 1 + (sim > best[:, None]).sum(axis=1)
    t2i = {k: float((ranks <= k).mean()) for k in ks}
    return {
        "image_to_text": {f"r@{k}": v for k, v in i2t.items()},
        "text_to_image": {f"r@{k}": v for k, v in t2i.items()},
    }


def evaluate_pairs(clip: ClipModel, folder: Path) -> dict[str, Any]:
    """Recall figures of one loaded model on the pairs in ``folder``."""
    image_emb, text_emb, captions = embed_pairs(clip, folder)
    return {
        "model": clip.name,
        "fingerprint": clip.fingerprint,
        "pairs": len(captions),
        "distinct_captions": len(set(captions)),
        **pair_recall(image_emb, text_emb, captions),
    }


def compare(folder: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The report section for per-checkpoint results of :func:`evaluate_pairs`."""
    first = next(iter(results.values()))
    return {
        "pairs_dir": str(folder),
        "pairs": first["pairs"],
        "distinct_captions": first["distinct_captions"],
        "ks": list(RECALL_KS),
        "checkpoints": results,
    }


def retrieval_eval(folder: Path, checkpoints: dict[str, ModelSettings]) -> dict[str, Any]:
    """Evaluate each labelled checkpoint (e.g. ``base`` and ``trained``) on the same pairs."""
    from pathgen.embed.model import load_clip

    return compare(
        folder,
        {
            label: {
                "pretrained": settings.pretrained,
                **evaluate_pairs(load_clip(settings), folder),
            }
            for label, settings in checkpoints.items()
        },
    )
