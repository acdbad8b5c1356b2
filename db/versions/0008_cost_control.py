"""Cost control: cached input tokens per revision, the run's stored estimate.

Revision ID: 0008
Revises: 0005

``caption_revisions.cached_input_tokens``: the part of ``input_tokens`` the provider
served from its prompt cache (priced at ``price_cached_input_per_1k``).
``runs.estimate``: the last ``pathgen estimate`` of the run, per stage (shown by
``pathgen status`` beside the actual figures).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy on SQLite): the table keeps its append-only triggers.
    op.add_column(
        "caption_revisions",
        sa.Column("cached_input_tokens", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("runs", sa.Column("estimate", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (a batch copy would drop the triggers).
    for table, column in (("runs", "estimate"), ("caption_revisions", "cached_input_tokens")):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
