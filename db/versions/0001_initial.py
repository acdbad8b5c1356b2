"""initial

Revision ID: 0001
Revises:
Create Date: 2026-11-30

The schema of every pathgen table, plus database triggers that make
caption_revisions append-only (no UPDATE of its content, no DELETE).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


IMMUTABLE = "caption revisions are append-only: store a new revision instead"
_CONTENT_COLUMNS = "text, tile_id, run_id, stage, parent_id, provider, model, template_hash"

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER caption_revisions_no_update BEFORE UPDATE OF {_CONTENT_COLUMNS}
    ON caption_revisions BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END""",
    f"""CREATE TRIGGER caption_revisions_no_delete BEFORE DELETE ON caption_revisions
    BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END""",
)
POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION caption_revisions_immutable() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '{IMMUTABLE}'; END; $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER caption_revisions_no_update BEFORE UPDATE OF {_CONTENT_COLUMNS}
    ON caption_revisions FOR EACH ROW EXECUTE FUNCTION caption_revisions_immutable()""",
    """CREATE TRIGGER caption_revisions_no_delete BEFORE DELETE ON caption_revisions
    FOR EACH ROW EXECUTE FUNCTION caption_revisions_immutable()""",
)


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_TRIGGERS if dialect == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)


def _drop_triggers() -> None:
    op.execute("DROP TRIGGER IF EXISTS caption_revisions_no_update" + _on_table())
    op.execute("DROP TRIGGER IF EXISTS caption_revisions_no_delete" + _on_table())
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS caption_revisions_immutable()")


def _on_table() -> str:
    return "" if op.get_bind().dialect.name == "sqlite" else " ON caption_revisions"


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pathgen_version", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_table(
        "slides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("vendor", sa.String(length=64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("mpp", sa.Float(), nullable=True),
        sa.Column("mpp_source", sa.String(length=32), nullable=True),
        sa.Column("level_count", sa.Integer(), nullable=True),
        sa.Column("params_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_reason", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tile_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slides")),
        sa.UniqueConstraint("path", name=op.f("uq_slides_path")),
    )
    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=False),
        sa.Column("model_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["slide_id"], ["slides.id"], name=op.f("fk_embeddings_slide_id_slides")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings")),
        sa.UniqueConstraint(
            "slide_id", "model_fingerprint", name=op.f("uq_embeddings_slide_id_model_fingerprint")
        ),
    )
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_embeddings_slide_id"), ["slide_id"], unique=False)

    op.create_table(
        "retrieval_prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=True),
        sa.Column("prompt_key", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("organ", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_retrieval_prompts_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["slide_id"], ["slides.id"], name=op.f("fk_retrieval_prompts_slide_id_slides")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrieval_prompts")),
        sa.UniqueConstraint(
            "run_id",
            "slide_id",
            "prompt_key",
            name=op.f("uq_retrieval_prompts_run_id_slide_id_prompt_key"),
        ),
    )
    with op.batch_alter_table("retrieval_prompts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retrieval_prompts_run_id"), ["run_id"], unique=False)

    op.create_table(
        "run_slides",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=False),
        sa.Column("manifest_mpp", sa.Float(), nullable=True),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("report_text", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("organ", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_slides_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["slide_id"], ["slides.id"], name=op.f("fk_run_slides_slide_id_slides")
        ),
        sa.PrimaryKeyConstraint("run_id", "slide_id", name=op.f("pk_run_slides")),
    )
    op.create_table(
        "tiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=False),
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("read_level", sa.Integer(), nullable=False),
        sa.Column("mpp", sa.Float(), nullable=False),
        sa.Column("tile_px", sa.Integer(), nullable=False),
        sa.Column("tissue_fraction", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], name=op.f("fk_tiles_slide_id_slides")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiles")),
        sa.UniqueConstraint("slide_id", "x", "y", "size", name=op.f("uq_tiles_slide_id_x_y_size")),
    )
    with op.batch_alter_table("tiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tiles_slide_id"), ["slide_id"], unique=False)

    op.create_table(
        "work_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_work_items_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_items")),
        sa.UniqueConstraint("run_id", "stage", "key", name=op.f("uq_work_items_run_id_stage_key")),
    )
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_work_items_run_id_stage_status_available_at"),
            ["run_id", "stage", "status", "available_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_work_items_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )

    op.create_table(
        "caption_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tile_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("parent_ids", sa.JSON(), nullable=True),
        sa.Column("branch", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("template_name", sa.String(length=128), nullable=True),
        sa.Column("template_hash", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("edits", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["caption_revisions.id"],
            name=op.f("fk_caption_revisions_parent_id_caption_revisions"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_caption_revisions_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tiles.id"], name=op.f("fk_caption_revisions_tile_id_tiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caption_revisions")),
    )
    with op.batch_alter_table("caption_revisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_caption_revisions_parent_id"), ["parent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_caption_revisions_run_id_stage_tile_id"),
            ["run_id", "stage", "tile_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_caption_revisions_tile_id"), ["tile_id"], unique=False)

    op.create_table(
        "selections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("tile_id", sa.Integer(), nullable=False),
        sa.Column("kept", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("prompt_key", sa.String(length=255), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("report_score", sa.Float(), nullable=True),
        sa.Column("cluster_id", sa.Integer(), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["duplicate_of"], ["tiles.id"], name=op.f("fk_selections_duplicate_of_tiles")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_selections_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tiles.id"], name=op.f("fk_selections_tile_id_tiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selections")),
        sa.UniqueConstraint("run_id", "tile_id", name=op.f("uq_selections_run_id_tile_id")),
    )
    with op.batch_alter_table("selections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_selections_run_id"), ["run_id"], unique=False)

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("tile_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["caption_revisions.id"],
            name=op.f("fk_reviews_revision_id_caption_revisions"),
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_reviews_run_id_runs")),
        sa.ForeignKeyConstraint(["tile_id"], ["tiles.id"], name=op.f("fk_reviews_tile_id_tiles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reviews_run_id_tile_id"), ["run_id", "tile_id"], unique=False
        )

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_run_id_tile_id"))

    op.drop_table("reviews")
    with op.batch_alter_table("selections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_selections_run_id"))

    op.drop_table("selections")
    with op.batch_alter_table("caption_revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_caption_revisions_tile_id"))
        batch_op.drop_index(batch_op.f("ix_caption_revisions_run_id_stage_tile_id"))
        batch_op.drop_index(batch_op.f("ix_caption_revisions_parent_id"))

    op.drop_table("caption_revisions")
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_items_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_work_items_run_id_stage_status_available_at"))

    op.drop_table("work_items")
    with op.batch_alter_table("tiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tiles_slide_id"))

    op.drop_table("tiles")
    op.drop_table("run_slides")
    with op.batch_alter_table("retrieval_prompts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retrieval_prompts_run_id"))

    op.drop_table("retrieval_prompts")
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_embeddings_slide_id"))

    op.drop_table("embeddings")
    op.drop_table("slides")
    op.drop_table("runs")
