"""Zero-shot classification accuracy of CLIP checkpoints on a labelled folder of tiles.

Input: an ImageFolder layout (``DIR/<class>/*.png|jpg|jpeg|tif|tiff``; class names are
the folder names with underscores as spaces) or a CSV with an ``image`` (or ``path``)
column and a ``label`` column (relative paths are relative to the CSV). Each class gets a
prompt ensemble (the mean text embedding over the templates, see
:func:`pathgen.embed.zeroshot.zeroshot_classifier`).

Example::

    data = load_labelled("tiles/")
    result = evaluate_checkpoint(data, ModelSettings(name="ViT-B-16", pretrained="ft.pt"))
    result["accuracy"], result["confusion_matrix"]
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathgen.errors import ConfigError, PathgenError
from pathgen.settings import ModelSettings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class LabelledImages:
    """Image paths with class indices into ``classes``."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]

    @property
    def support(self) -> list[int]:
        return [self.labels.count(i) for i in range(len(self.classes))]


def class_name(folder: str) -> str:
    """Folder name -> class name used in prompts (underscores become spaces)."""
    return " ".join(folder.replace("_", " ").split())


def _from_folder(root: Path) -> LabelledImages:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    for folder in folders:
        images = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            continue
        classes.append(class_name(folder.name))
        paths.extend(images)
        labels.extend([len(classes) - 1] * len(images))
    return LabelledImages(paths, labels, classes)


def _from_csv(file: Path) -> LabelledImages:
    with open(file, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        image_col = "image" if "image" in cols else "path" if "path" in cols else None
        if image_col is None or "label" not in cols:
            raise ConfigError(
                "labelled CSV needs an 'image' (or 'path') column and a 'label' column",
                path=str(file),
            )
        rows = [(row[image_col], row["label"]) for row in reader]
    names = sorted({class_name(label) for _, label in rows if label.strip()})
    index = {name: i for i, name in enumerate(names)}
    paths, labels = [], []
    for image, label in rows:
        if not label.strip():
            continue
        path = Path(image)
        paths.append(path if path.is_absolute() else file.parent / path)
        labels.append(index[class_name(label)])
    return LabelledImages(paths, labels, names)


def load_labelled(source: str | os.PathLike[str]) -> LabelledImages:
    """Read a labelled ImageFolder directory or CSV; needs at least two classes."""
    src = Path(source)
    if src.is_dir():
        data = _from_folder(src)
    elif src.is_file() and src.suffix.lower() == ".csv":
        data = _from_csv(src)
    else:
        raise ConfigError(
            "not a labelled image folder (DIR/<class>/*.png) or a CSV (image,label)",
            path=str(src),
        )
    if len(data.classes) < 2:
        raise ConfigError(
            f"need images of at least two classes, found {len(data.classes)}", path=str(src)
        )
    return data


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class figures and the confusion matrix."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _open_image(path: Path):  # noqa: ANN202 - PIL image
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def evaluate_checkpoint(
    data: LabelledImages,
    settings: ModelSettings,
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Zero-shot metrics of the model named by ``settings`` on ``data``.

    Raises :class:`PathgenError` when an image cannot be read.
    """
    from pathgen.embed.model import load_clip
    from pathgen.embed.tiles import embed_tiles
    from pathgen.embed.zeroshot import DEFAULT_TEMPLATES, classify, zeroshot_classifier

    clip = load_clip(settings)
    result = embed_tiles(clip, data.paths, _open_image, reader_threads=settings.reader_threads)
    if result.errors:
        index, reason = next(iter(sorted(result.errors.items())))
        raise PathgenError(
            f"{data.paths[index]}: cannot read image ({reason}); "
            f"{len(result.errors)} unreadable image(s) in total"
        )
    class_emb = zeroshot_classifier(clip, data.classes, list(templates or DEFAULT_TEMPLATES))
    pred, _ = classify(np.asarray(result.embeddings, dtype=np.float32), class_emb)
    metrics = classification_metrics(data.labels, pred.tolist(), data.classes)
    return {
        "model": clip.name,
        "pretrained": settings.pretrained,
        "fingerprint": clip.fingerprint,
        **metrics,
        "predictions": pred.tolist(),
    }


def zeroshot_eval(
    data: LabelledImages,
    checkpoints: dict[str, ModelSettings],
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate each labelled checkpoint (e.g. ``base`` and ``compare``) on the same images."""
    from pathgen.embed.zeroshot import DEFAULT_TEMPLATES

    templates = list(templates or DEFAULT_TEMPLATES)
    return {
        "n_images": len(data.paths),
        "classes": data.classes,
        "support": data.support,
        "templates": templates,
        "images": [str(p) for p in data.paths],
        "labels": data.labels,
        "checkpoints": {
            label: evaluate_checkpoint(data, settings, templates)
            for label, settings in checkpoints.items()
        },
    }
