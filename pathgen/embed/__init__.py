"""CLIP models and tile embeddings (open_clip backend).

Heavy imports (torch, open_clip) happen on first use of a model-related name, so the
file helpers stay cheap to import.

Example::

    from pathgen.embed import load_clip, embed_tiles, embedding_path, save_embeddings
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from pathgen.embed.files import embedding_path, fingerprint_dir, load_embeddings, save_embeddings

_LAZY = {
    "ClipModel": "pathgen.embed.model",
    "ClipTokens": "pathgen.embed.model",
    "autocast_dtype": "pathgen.embed.model",
    "load_clip": "pathgen.embed.model",
    "load_tokens": "pathgen.embed.model",
    "register_model_config": "pathgen.embed.model",
    "select_device": "pathgen.embed.model",
    "TileEmbeddings": "pathgen.embed.tiles",
    "embed_tiles": "pathgen.embed.tiles",
    "tiny_config_path": "pathgen.embed.tiny",
    "write_tiny_clip": "pathgen.embed.tiny",
    "DEFAULT_TEMPLATES": "pathgen.embed.zeroshot",
    "classify": "pathgen.embed.zeroshot",
    "zeroshot_classifier": "pathgen.embed.zeroshot",
}

__all__ = [
    "ClipModel",
    "ClipTokens",
    "DEFAULT_TEMPLATES",
    "TileEmbeddings",
    "autocast_dtype",
    "classify",
    "embed_tiles",
    "embedding_path",
    "fingerprint_dir",
    "load_clip",
    "load_embeddings",
    "load_tokens",
    "register_model_config",
    "save_embeddings",
    "select_device",
    "tiny_config_path",
    "write_tiny_clip",
    "zeroshot_classifier",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pathgen.embed' has no attribute {name!r}")
