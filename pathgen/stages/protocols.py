"""Protocols the caption stages need from other layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@runtime_checkable
class ClipScorer(Protocol):
    """What the offline provider needs from a CLIP model (``pathgen.embed`` provides one)."""

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Embed images; rows are L2-normalised."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts; rows are L2-normalised."""
        ...

    def count_tokens(self, text: str) -> int:
        """BPE tokens of ``text`` including start/end tokens, without truncation."""
        ...
