"""The reader that opened each slide.

Revision ID: 0005
Revises: 0004

``slides.reader``: ``openslide``, ``wsidicom``, ``pydicom``, ``tifffile`` or ``pil``
(NULL until the slide is tiled, and for a file no reader could open).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("slides") as batch:
        batch.add_column(sa.Column("reader", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("slides") as batch:
        batch.drop_column("reader")
