"""Image inputs of the VLM stages: PIL images, encoded bytes or ready JPEG parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from pathgen.llm.base import ImagePart
from pathgen.llm.images import encode_image

if TYPE_CHECKING:
    from PIL import Image

    ImageInput = Union[ImagePart, bytes, Image.Image]  # noqa: UP007


def to_image_part(image: ImageInput, max_side: int) -> ImagePart:
    """Return ``image`` as a JPEG :class:`ImagePart` whose longest side is ``max_side`` or less."""
    if isinstance(image, ImagePart):
        return image
    return encode_image(image, max_side=max_side)
