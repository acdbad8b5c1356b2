"""Zero-shot classification with prompt ensembles, as in the CLIP and PathGen tutorials.

Example::

    class_emb = zeroshot_classifier(clip, ["tumor", "stroma"], DEFAULT_TEMPLATES)
    pred, probs = classify(tile_emb, class_emb)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "an H&E image of {}.",
    "a histopathology image showing {}.",
    "an H&E stained image of {}.",
    "a photomicrograph of {}.",
    "a pathology tissue section showing {}.",
)


class TextEncoder(Protocol):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def zeroshot_classifier(
    clip: TextEncoder, classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> np.ndarray:
    """One unit-norm embedding per class: the normalised mean of its template embeddings."""
    if not classes or not templates:
        raise ValueError("need at least one class and one template")
    texts = [tpl.format(name) for name in classes for tpl in templates]
    emb = clip.encode_texts(texts).astype(np.float32).reshape(len(classes), len(templates), -1)
    mean = emb.mean(axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def classify(
    emb: np.ndarray, class_emb: np.ndarray, logit_scale: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class index per row of ``emb`` and softmax probabilities over classes."""
    logits = logit_scale * (np.asarray(emb, dtype=np.float32) @ class_emb.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.argmax(axis=1), probs
