"""Cost control: cached input tokens per revision, the run's stored estimate.

Revision ID: 0007
Revises: 0006

``caption_revisions.cached_input_tokens``: the part of ``input_tokens`` the provider
served from its prompt cache (priced at ``price_cached_input_per_1k``).
``run_estimates``: the last ``pathgen estimate`` of a run, per stage (shown by
``pathgen status`` beside the actual figures); written before the run exists, so it has
no foreign key to ``runs``.
``llm_batches``: provider batches of caption stages (batch mode), recorded with their
items before anything is submitted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy on SQLite): the table keeps its append-only triggers.
    op.add_column(
        "caption_revisions",
        sa.Column("cached_input_tokens", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "run_estimates",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("estimate", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_estimates")),
    )
    op.create_table(
        "llm_batches",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lease", sa.String(length=128), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("input_file_id", sa.String(length=128), nullable=True),
        sa.Column("provider_batch_id", sa.String(length=128), nullable=True),
        sa.Column("provider_status", sa.String(length=32), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_llm_batches_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_batches")),
    )
    op.create_index(
        op.f("ix_llm_batches_run_id_stage_state"), "llm_batches", ["run_id", "stage", "state"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_llm_batches_run_id_stage_state"), table_name="llm_batches")
    op.drop_table("llm_batches")
    op.drop_table("run_estimates")
    # SQLite >= 3.35 drops a column in place (a batch copy would drop the triggers).
    op.execute("ALTER TABLE caption_revisions DROP COLUMN cached_input_tokens")
