"""The usage the local test server reports: token counts and a provider-style prefix cache.

Tokens are counted as :mod:`pathgen.llm.tokens` counts them (text by characters, images
by the OpenAI rule, or Mistral's when the image part is Mistral-shaped, i.e. a bare URL
string), so estimates can be checked against the server.

The prompt cache works like the providers' prefix caches: a request's units (each
message's text in blocks of :data:`BLOCK_CHARS` characters, each image, in order) are
hashed cumulatively; the tokens of the longest run of leading units some earlier request
already sent are reported as ``usage.prompt_tokens_details.cached_tokens`` (when at least
``min_tokens``).

Example::

    cache = PromptCache()
    cache.usage(body, completion_tokens=12)["prompt_tokens_details"]["cached_tokens"]
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

from pathgen.llm.tokens import CHARS_PER_TOKEN, image_tokens, text_tokens

#: Cache granularity: 128 tokens of text, as OpenAI's prefix cache.
BLOCK_CHARS = 128 * CHARS_PER_TOKEN


def _image_size(url: str) -> tuple[int, int]:
    from PIL import Image

    try:
        data = base64.b64decode(url.split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (IndexError, ValueError, OSError):
        return 512, 512


def _text_units(role: bytes, text: str) -> list[tuple[bytes, int]]:
    blocks = [text[i : i + BLOCK_CHARS] for i in range(0, len(text), BLOCK_CHARS)] or [""]
    return [(role + b":" + b.encode(), text_tokens(b)) for b in blocks]


def _part_units(msg: dict[str, Any]) -> list[tuple[bytes, int]]:
    """(bytes identifying the unit, its tokens) for each unit of a message."""
    role = str(msg.get("role", "")).encode()
    content = msg.get("content")
    if not isinstance(content, list):
        return _text_units(role, content if isinstance(content, str) else json.dumps(content))
    units: list[tuple[bytes, int]] = []
    for part in content:
        if part.get("type") == "image_url":
            value = part.get("image_url")
            mistral = isinstance(value, str)
            url = value if mistral else (value or {}).get("url", "")
            w, h = _image_size(url)
            tokens = image_tokens("mistral" if mistral else "openai", w, h)
            units.append((role + b":img:" + url.encode(), tokens))
        else:
            units += _text_units(role, str(part.get("text", "")))
    return units


class PromptCache:
    """Which prompt prefixes the server has seen; ``enabled=False`` never reports a hit."""

    def __init__(self, *, enabled: bool = True, min_tokens: int = 0) -> None:
        self.enabled = enabled
        self.min_tokens = min_tokens
        self._seen: set[bytes] = set()

    def usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        """The ``usage`` object for a request ``body`` answered with ``completion_tokens``."""
        digest = hashlib.sha1()
        prompt = cached = 0
        hit = True
        for msg in body.get("messages", []):
            for key, tokens in _part_units(msg):
                digest.update(hashlib.sha1(key).digest())
                mark = digest.digest()
                prompt += tokens
                if hit and mark in self._seen:
                    cached = prompt
                else:
                    hit = False
                if self.enabled:
                    self._seen.add(mark)
        if cached < self.min_tokens or not self.enabled:
            cached = 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def clear(self) -> None:
        """Forget every prefix."""
        self._seen.clear()
