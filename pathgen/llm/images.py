"""Turn tiles into the JPEG parts sent to a VLM, and parts into data URLs."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from pathgen.errors import LLMError
from pathgen.llm.base import ImagePart

if TYPE_CHECKING:
    from PIL import Image

JPEG_QUALITY = 90


def encode_image(
    image: Image.Image | bytes, max_side: int, quality: int = JPEG_QUALITY
) -> ImagePart:
    """Resize ``image`` so its longest side is at most ``max_side`` and encode it as JPEG.

    ``image`` is a PIL image or encoded image bytes (any format PIL reads). Images
    already small enough keep their size; JPEG bytes that need no resize are kept as is.

    Example::

        part = encode_image(tile, max_side=settings.captioning.describe.image_max_side)
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, bytes | bytearray):
        try:
            pil = Image.open(io.BytesIO(image))
            pil.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise LLMError(f"cannot encode the image for the VLM: {exc}") from None
        if pil.format == "JPEG" and max(pil.size) <= max_side:
            return ImagePart(jpeg=bytes(image))
    else:
        pil = image
    if max(pil.size) > max_side:
        scale = max_side / max(pil.size)
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=quality)
    return ImagePart(jpeg=out.getvalue())


def data_url(part: ImagePart) -> str:
    """The ``data:image/jpeg;base64,...`` URL both OpenAI and Mistral accept."""
    return part.data_url
