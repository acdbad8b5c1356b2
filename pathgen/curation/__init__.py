"""Curation: full-text search over captions and a tile's revision history.

Example::

    from pathgen.curation import search_captions, tile_history
"""

from pathgen.curation.history import RevisionStep, TileHistory, tile_history, word_diff
from pathgen.curation.search import CaptionHit, query_phrases, search_captions

__all__ = [
    "CaptionHit",
    "RevisionStep",
    "TileHistory",
    "query_phrases",
    "search_captions",
    "tile_history",
    "word_diff",
]
