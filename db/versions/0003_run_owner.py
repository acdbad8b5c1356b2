"""The process that drives a run, so ``status`` can tell a live run from a killed one.

Revision ID: 0003
Revises: 0002

``runs.owner`` is ``host:pid:token`` of the ``pathgen run`` process while it drives the
run (cleared when it ends); a local owner whose process is gone means "interrupted".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("owner", sa.String(length=128), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # native since SQLite 3.35; no table rebuild
        op.execute("ALTER TABLE runs DROP COLUMN owner")
    else:
        op.drop_column("runs", "owner")
