"""Instruction-tuning / VQA items and their reviews.

Revision ID: 0006
Revises: 0005

``instruct_items`` is append-only like ``caption_revisions``: triggers reject an UPDATE
of its content and any DELETE (a curator's edit is a new item whose parent is the old).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IMMUTABLE = "instruct items are append-only: store a new item instead"
_CONTENT_COLUMNS = (
    "turns, kind, tile_id, run_id, revision_id, parent_id, provider, model, template_hash, "
    "verify_status, verify_reason"
)
SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER instruct_items_no_update BEFORE UPDATE OF {_CONTENT_COLUMNS}
    ON instruct_items BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END""",
    f"""CREATE TRIGGER instruct_items_no_delete BEFORE DELETE ON instruct_items
    BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END""",
)
POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION instruct_items_immutable() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '{IMMUTABLE}'; END; $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER instruct_items_no_update BEFORE UPDATE OF {_CONTENT_COLUMNS}
    ON instruct_items FOR EACH ROW EXECUTE FUNCTION instruct_items_immutable()""",
    """CREATE TRIGGER instruct_items_no_delete BEFORE DELETE ON instruct_items
    FOR EACH ROW EXECUTE FUNCTION instruct_items_immutable()""",
)


def upgrade() -> None:
    op.create_table(
        "instruct_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("tile_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("turns", sa.JSON(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("template_name", sa.String(length=128), nullable=True),
        sa.Column("template_hash", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("verify_status", sa.String(length=16), nullable=False),
        sa.Column("verify_reason", sa.Text(), nullable=True),
        sa.Column("verifier", sa.String(length=255), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["instruct_items.id"],
            name=op.f("fk_instruct_items_parent_id_instruct_items"),
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["caption_revisions.id"],
            name=op.f("fk_instruct_items_revision_id_caption_revisions"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_instruct_items_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tiles.id"], name=op.f("fk_instruct_items_tile_id_tiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instruct_items")),
    )
    with op.batch_alter_table("instruct_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_instruct_items_revision_id"), ["revision_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_instruct_items_run_id_tile_id"), ["run_id", "tile_id"], unique=False
        )
    op.create_table(
        "instruct_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["instruct_items.id"],
            name=op.f("fk_instruct_reviews_item_id_instruct_items"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_instruct_reviews_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instruct_reviews")),
    )
    with op.batch_alter_table("instruct_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instruct_reviews_item_id"), ["item_id"], unique=False)
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_TRIGGERS if dialect == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    on = "" if op.get_bind().dialect.name == "sqlite" else " ON instruct_items"
    op.execute("DROP TRIGGER IF EXISTS instruct_items_no_update" + on)
    op.execute("DROP TRIGGER IF EXISTS instruct_items_no_delete" + on)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS instruct_items_immutable()")
    with op.batch_alter_table("instruct_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instruct_reviews_item_id"))
    op.drop_table("instruct_reviews")
    with op.batch_alter_table("instruct_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instruct_items_run_id_tile_id"))
        batch_op.drop_index(batch_op.f("ix_instruct_items_revision_id"))
    op.drop_table("instruct_items")
