"""Token counts without a tokenizer: text by characters, images by the provider's rule.

Used for estimates and budgets (before a call is made) and by the local test server
(which reports usage the same way, so estimates can be checked against it).

* text: about 4 characters per token (English prose with OpenAI's and Mistral's BPE
  tokenizers lands within a few percent of this);
* images, OpenAI (high detail): the image is scaled to fit 2048 x 2048, then its shortest
  side to at most 768 px; each 512 px tile costs 170 tokens, plus 85;
* images, Mistral (Pixtral): scaled to fit 1024 x 1024; one token per 16 x 16 patch plus
  one break token per row of patches.

Example::

    text_tokens("Describe the image.")            # 4
    image_tokens("openai", 672, 672)               # 765
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4


def text_tokens(text: str) -> int:
    """Approximate token count of ``text``."""
    return len(text) // CHARS_PER_TOKEN


def _fit(width: int, height: int, side: int) -> tuple[float, float]:
    scale = min(1.0, side / max(width, height))
    return width * scale, height * scale


def image_tokens(provider: str, width: int, height: int) -> int:
    """Input tokens one ``width`` x ``height`` image costs with ``provider``'s rule."""
    if provider == "mistral":
        w, h = _fit(width, height, 1024)
        cols, rows = math.ceil(w / 16), math.ceil(h / 16)
        return cols * rows + rows
    w, h = _fit(width, height, 2048)
    shortest = min(w, h)
    if shortest > 768:
        w, h = w * 768 / shortest, h * 768 / shortest
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
