"""pathgen: whole-slide images to tile/caption pairs for pathology CLIP and VLM training."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # The version is read on first use: importlib.metadata is slow to import, and
    # ``pathgen --help`` does not need it.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pathgen")
        except PackageNotFoundError:  # a source tree that is not installed
            return "0.0.0"
    raise AttributeError(f"module 'pathgen' has no attribute {name!r}")
