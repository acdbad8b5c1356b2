"""Reference captions from a CSV file, matched to a run's tiles.

Columns: ``text`` plus either ``tile_id`` or ``slide,x,y`` (level-0 origin; ``slide`` is
the slide path as stored, its file name, or its file name without extension).

Example::

    refs = read_references("refs.csv", run_data.tiles)   # {tile_id: text}
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from pathgen.errors import ConfigError
from pathgen.eval.records import TileRef


def _slide_keys(path: str) -> set[str]:
    p = Path(path)
    return {path, os.path.abspath(path), p.name, p.stem}


def read_references(path: str | os.PathLike[str], tiles: Mapping[int, TileRef]) -> dict[int, str]:
    """``{tile_id: reference text}`` for the rows that name a tile of ``tiles``.

    Rows naming unknown tiles are skipped. Raises :class:`ConfigError` for a missing file,
    missing columns, or a malformed row.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError("references CSV not found", path=str(file))
    by_origin: dict[tuple[str, int, int], int] = {}
    for tile in tiles.values():
        for key in _slide_keys(tile.slide_path):
            by_origin[(key, tile.x, tile.y)] = tile.tile_id
    out: dict[int, str] = {}
    with open(file, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if "text" not in cols or not ({"tile_id"} <= cols or {"slide", "x", "y"} <= cols):
            raise ConfigError(
                f"references CSV needs a 'text' column and 'tile_id' or 'slide,x,y' columns "
                f"(found: {', '.join(sorted(cols)) or 'none'})",
                path=str(file),
            )
        for line, row in enumerate(reader, start=2):
            text = (row.get("text") or "").strip()
            try:
                if row.get("tile_id"):
                    tile_id: int | None = int(row["tile_id"])
                else:
                    tile_id = by_origin.get((row["slide"], int(row["x"]), int(row["y"])))
            except (TypeError, ValueError):
                raise ConfigError(
                    f"line {line}: tile_id / x / y must be integers", path=str(file)
                ) from None
            if tile_id is not None and tile_id in tiles and text:
                out[tile_id] = text
    return out
