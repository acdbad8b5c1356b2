"""Schema objects made by migrations on purpose but absent from the models.

Full-text search (migration 0002) adds an SQLite FTS5 virtual table (``caption_search``
and its shadow tables ``caption_search_*``) and a Postgres expression index
(``ix_caption_revisions_text_fts``). SQLAlchemy cannot describe either, so the
models leave them out and schema comparison (Alembic autogenerate, ``schema_diff``)
skips them through these filters.

Example::

    context.configure(..., include_name=include_name, include_object=include_object)
"""

from __future__ import annotations

from typing import Any

SEARCH_TABLE_PREFIX = "caption_search"
SEARCH_INDEX = "ix_caption_revisions_text_fts"


def is_search_object(name: str | None, type_: str) -> bool:
    """True for the full-text search table(s) and index that the models do not declare."""
    if name is None:
        return False
    if type_ == "table":
        return name == SEARCH_TABLE_PREFIX or name.startswith(SEARCH_TABLE_PREFIX + "_")
    return type_ == "index" and name == SEARCH_INDEX


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: skip reflecting the search objects."""
    return not is_search_object(name, type_)


def include_object(_obj: Any, name: str | None, type_: str, _reflected: bool, _other: Any) -> bool:
    """Alembic ``include_object`` hook: skip comparing the search objects."""
    return not is_search_object(name, type_)
