"""Worker beats: each worker's provider calls in flight per run and stage.

Revision ID: 0010
Revises: 0009

``worker_beats``: one row per worker process, run and stage, rewritten about every
second while the worker runs and deleted when it stops; ``pathgen status`` and the
progress table add up the fresh rows (a worker that died leaves a stale row, ignored).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_beats",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("calls_in_flight", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "run_id", "stage", name=op.f("pk_worker_beats")),
    )


def downgrade() -> None:
    op.drop_table("worker_beats")
