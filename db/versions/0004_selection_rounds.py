"""Selection rounds: a run can select its tiles again (with a retrained CLIP) and keep both.

Revision ID: 0004
Revises: 0003

``selection_rounds`` records each round's model and selection settings; ``selections``
gains ``round`` (existing rows are round 0) and ``model_fingerprint``, and its uniqueness
becomes (run, round, tile).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "selection_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_selection_rounds_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selection_rounds")),
        sa.UniqueConstraint("run_id", "round", name=op.f("uq_selection_rounds_run_id_round")),
    )
    with op.batch_alter_table("selections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("model_fingerprint", sa.String(length=128), nullable=True))
        batch_op.drop_constraint("uq_selections_run_id_tile_id", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_selections_run_id_round_tile_id"), ["run_id", "round", "tile_id"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM selections WHERE round > 0")
    with op.batch_alter_table("selections", schema=None) as batch_op:
        batch_op.drop_constraint("uq_selections_run_id_round_tile_id", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_selections_run_id_tile_id"), ["run_id", "tile_id"]
        )
        batch_op.drop_column("model_fingerprint")
        batch_op.drop_column("round")
    op.drop_table("selection_rounds")
