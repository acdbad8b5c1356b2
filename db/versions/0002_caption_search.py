"""Full-text search over caption revisions.

Revision ID: 0002
Revises: 0001

SQLite: an FTS5 table ``caption_search`` over ``caption_revisions.text`` (external
content, rowid = revision id, Porter stemming) filled by an AFTER INSERT trigger;
revisions are append-only, so no update or delete trigger is needed.
Postgres: a GIN expression index on ``to_tsvector('english', text)``.
Neither object is in the models; ``pathgen.store.schema_filter`` hides them from
schema comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = (
    """CREATE VIRTUAL TABLE caption_search USING fts5(
        text, content='caption_revisions', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER caption_search_after_insert AFTER INSERT ON caption_revisions
    BEGIN INSERT INTO caption_search(rowid, text) VALUES (new.id, new.text); END""",
    "INSERT INTO caption_search(caption_search) VALUES ('rebuild')",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS caption_search_after_insert",
    "DROP TABLE IF EXISTS caption_search",
)
POSTGRES_UP = (
    """CREATE INDEX ix_caption_revisions_text_fts ON caption_revisions
    USING gin (to_tsvector('english', text))""",
)
POSTGRES_DOWN = ("DROP INDEX IF EXISTS ix_caption_revisions_text_fts",)


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    for statement in SQLITE_UP if _is_sqlite() else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in SQLITE_DOWN if _is_sqlite() else POSTGRES_DOWN:
        op.execute(statement)
