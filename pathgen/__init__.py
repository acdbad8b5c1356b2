"""pathgen: whole-slide images to tile/caption pairs for pathology CLIP and VLM training."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pathgen")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
