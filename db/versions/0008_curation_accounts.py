"""Curation for a team: accounts, sessions, review holds, and the curation index with tallies.

Revision ID: 0008
Revises: 0007

``accounts`` / ``web_sessions``: who may use the web UI (argon2 password hashes; session
cookies stored as SHA-256 digests). ``review_holds``: tiles handed out by "Review next".
``review_samples``: tiles an admin asked two curators to review (agreement).
``curation_tiles``: one row per captioned tile of a run (slide, organ, label, CLIP score,
final revision, review state, reviewer), and ``run_tallies``: per-run counts (revisions
by stage and status with token and cost sums; captioned tiles by review state; finished
work items by stage; kept tiles by slide and selection round). Both are kept by triggers
on ``caption_revisions``, ``reviews``, ``selections``, ``work_items`` and
``curation_tiles`` in the writer's own transaction: SQLite row triggers, Postgres
statement triggers over transition tables (one upsert per statement, keys in order; row
triggers would update one tally row once per row, which Postgres makes quadratic within a
transaction, e.g. when ``run --redo`` requeues a million finished items at once).
Existing rows are backfilled. ``ix_work_items_open`` (partial: not done) lets the
dashboard count queued, leased and failed items without reading finished ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINAL = "stage IN ('summarize', 'human') AND branch = 'caption' AND status = 'ok'"
FINAL_X = FINAL.replace(" AND ", " AND x.")
KEPT_KEY = "CAST({slide} AS VARCHAR(20)) || ':' || CAST({round} AS VARCHAR(20))"
SCORE = """(SELECT s.score FROM selections s WHERE s.tile_id = {tile} AND s.run_id = {run}
           ORDER BY s.round DESC LIMIT 1)"""

BACKFILL = (
    f"""INSERT INTO curation_tiles (run_id, tile_id, slide_id, organ, label, score,
        final_revision_id, final_stage, review, reviewer, version)
    SELECT c.run_id, c.tile_id, t.slide_id, rs.organ, rs.label,
        {SCORE.format(tile="c.tile_id", run="c.run_id")}, f.id, f.stage,
        COALESCE(r.decision, 'unreviewed'), r.reviewer, 0
    FROM (SELECT run_id, tile_id FROM caption_revisions GROUP BY run_id, tile_id) c
    JOIN tiles t ON t.id = c.tile_id
    LEFT JOIN run_slides rs ON rs.run_id = c.run_id AND rs.slide_id = t.slide_id
    LEFT JOIN caption_revisions f ON f.id = (SELECT max(x.id) FROM caption_revisions x
        WHERE x.run_id = c.run_id AND x.tile_id = c.tile_id AND x.{FINAL_X})
    LEFT JOIN reviews r ON r.id = (SELECT max(y.id) FROM reviews y
        WHERE y.run_id = c.run_id AND y.tile_id = c.tile_id)""",
    """INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
    SELECT run_id, 'revisions', stage || ':' || status, count(*), sum(input_tokens),
        sum(output_tokens), sum(cost)
    FROM caption_revisions GROUP BY run_id, stage, status""",
    """INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
    SELECT run_id, 'work_done', stage, count(*), 0, 0, 0
    FROM work_items WHERE status = 'done' GROUP BY run_id, stage""",
    f"""INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
    SELECT s.run_id, 'kept', {KEPT_KEY.format(slide="t.slide_id", round="s.round")},
        count(*), 0, 0, 0
    FROM selections s JOIN tiles t ON t.id = s.tile_id WHERE s.kept
    GROUP BY s.run_id, t.slide_id, s.round""",
)

SQLITE_TALLY_TRIGGERS = (
    """CREATE TRIGGER curation_tiles_tally_insert AFTER INSERT ON curation_tiles
    BEGIN
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        VALUES (new.run_id, 'review', new.review, 1, 0, 0, 0)
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER curation_tiles_tally_update AFTER UPDATE OF review ON curation_tiles
    WHEN old.review IS NOT new.review
    BEGIN
        UPDATE run_tallies SET n = n - 1
        WHERE run_id = old.run_id AND kind = 'review' AND key = old.review;
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        VALUES (new.run_id, 'review', new.review, 1, 0, 0, 0)
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + 1;
    END""",
)
SQLITE_SOURCE_TRIGGERS = (
    f"""CREATE TRIGGER curation_after_revision AFTER INSERT ON caption_revisions
    BEGIN
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        VALUES (new.run_id, 'revisions', new.stage || ':' || new.status, 1,
                new.input_tokens, new.output_tokens, new.cost)
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + 1,
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cost = cost + excluded.cost;
        INSERT INTO curation_tiles (run_id, tile_id, slide_id, organ, label, score, review,
                                    version)
        SELECT new.run_id, new.tile_id, t.slide_id, rs.organ, rs.label,
            {SCORE.format(tile="new.tile_id", run="new.run_id")}, 'unreviewed', 0
        FROM tiles t
        LEFT JOIN run_slides rs ON rs.run_id = new.run_id AND rs.slide_id = t.slide_id
        WHERE t.id = new.tile_id
        ON CONFLICT (run_id, tile_id) DO NOTHING;
        UPDATE curation_tiles SET final_revision_id = new.id, final_stage = new.stage
        WHERE run_id = new.run_id AND tile_id = new.tile_id
            AND new.{FINAL.replace(" AND ", " AND new.")}
            AND (final_revision_id IS NULL OR final_revision_id < new.id);
    END""",
    """CREATE TRIGGER curation_after_review AFTER INSERT ON reviews
    BEGIN
        UPDATE curation_tiles SET review = new.decision, reviewer = new.reviewer
        WHERE run_id = new.run_id AND tile_id = new.tile_id;
    END""",
    f"""CREATE TRIGGER curation_after_selection AFTER INSERT ON selections
    BEGIN
        UPDATE curation_tiles SET score = new.score
        WHERE run_id = new.run_id AND tile_id = new.tile_id;
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT new.run_id, 'kept', {KEPT_KEY.format(slide="t.slide_id", round="new.round")},
            1, 0, 0, 0
        FROM tiles t WHERE t.id = new.tile_id AND new.kept
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER work_tally_insert AFTER INSERT ON work_items WHEN new.status = 'done'
    BEGIN
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        VALUES (new.run_id, 'work_done', new.stage, 1, 0, 0, 0)
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER work_tally_update AFTER UPDATE OF status ON work_items
    WHEN (old.status = 'done') <> (new.status = 'done')
    BEGIN
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        VALUES (new.run_id, 'work_done', new.stage,
                CASE WHEN new.status = 'done' THEN 1 ELSE -1 END, 0, 0, 0)
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + excluded.n;
    END""",
    """CREATE TRIGGER work_tally_delete AFTER DELETE ON work_items WHEN old.status = 'done'
    BEGIN
        UPDATE run_tallies SET n = n - 1
        WHERE run_id = old.run_id AND kind = 'work_done' AND key = old.stage;
    END""",
)
SQLITE_TRIGGERS = (
    "curation_tiles_tally_insert",
    "curation_tiles_tally_update",
    "curation_after_revision",
    "curation_after_review",
    "curation_after_selection",
    "work_tally_insert",
    "work_tally_update",
    "work_tally_delete",
)

_UPSERT_TALLY = """ON CONFLICT (run_id, kind, key) DO UPDATE SET n = run_tallies.n + excluded.n,
        input_tokens = run_tallies.input_tokens + excluded.input_tokens,
        output_tokens = run_tallies.output_tokens + excluded.output_tokens,
        cost = run_tallies.cost + excluded.cost"""
POSTGRES_FUNCTIONS = {
    "curation_tiles_tally_insert": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'review', review, count(*), 0, 0, 0 FROM new_rows
        GROUP BY run_id, review ORDER BY 1, 3
        {_UPSERT_TALLY};""",
    "curation_tiles_tally_update": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'review', review, sum(d), 0, 0, 0 FROM (
            SELECT run_id, review, -1 AS d FROM old_rows
            UNION ALL SELECT run_id, review, 1 AS d FROM new_rows) x
        GROUP BY run_id, review HAVING sum(d) <> 0 ORDER BY 1, 3
        {_UPSERT_TALLY};""",
    "curation_after_revision": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'revisions', stage || ':' || status, count(*), sum(input_tokens),
            sum(output_tokens), sum(cost)
        FROM new_rows GROUP BY run_id, stage, status ORDER BY 1, 3
        {_UPSERT_TALLY};
        INSERT INTO curation_tiles (run_id, tile_id, slide_id, organ, label, score, review,
                                    version)
        SELECT DISTINCT ON (n.run_id, n.tile_id) n.run_id, n.tile_id, t.slide_id, rs.organ,
            rs.label, {SCORE.format(tile="n.tile_id", run="n.run_id")}, 'unreviewed', 0
        FROM new_rows n JOIN tiles t ON t.id = n.tile_id
        LEFT JOIN run_slides rs ON rs.run_id = n.run_id AND rs.slide_id = t.slide_id
        ORDER BY n.run_id, n.tile_id
        ON CONFLICT (run_id, tile_id) DO NOTHING;
        UPDATE curation_tiles c SET final_revision_id = f.id, final_stage = f.stage
        FROM (SELECT DISTINCT ON (run_id, tile_id) run_id, tile_id, id, stage FROM new_rows
              WHERE {FINAL} ORDER BY run_id, tile_id, id DESC) f
        WHERE c.run_id = f.run_id AND c.tile_id = f.tile_id
            AND (c.final_revision_id IS NULL OR c.final_revision_id < f.id);""",
    "curation_after_review": """
        UPDATE curation_tiles c SET review = r.decision, reviewer = r.reviewer
        FROM (SELECT DISTINCT ON (run_id, tile_id) run_id, tile_id, decision, reviewer
              FROM new_rows ORDER BY run_id, tile_id, id DESC) r
        WHERE c.run_id = r.run_id AND c.tile_id = r.tile_id;""",
    "curation_after_selection": f"""
        UPDATE curation_tiles c SET score = s.score
        FROM (SELECT DISTINCT ON (run_id, tile_id) run_id, tile_id, score
              FROM new_rows ORDER BY run_id, tile_id, round DESC) s
        WHERE c.run_id = s.run_id AND c.tile_id = s.tile_id;
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT s.run_id, 'kept', {KEPT_KEY.format(slide="t.slide_id", round="s.round")},
            count(*), 0, 0, 0
        FROM new_rows s JOIN tiles t ON t.id = s.tile_id WHERE s.kept
        GROUP BY s.run_id, t.slide_id, s.round ORDER BY 1, 3
        {_UPSERT_TALLY};""",
    "work_tally_insert": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'work_done', stage, count(*), 0, 0, 0 FROM new_rows
        WHERE status = 'done' GROUP BY run_id, stage ORDER BY 1, 3
        {_UPSERT_TALLY};""",
    "work_tally_update": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'work_done', stage, sum(d), 0, 0, 0 FROM (
            SELECT run_id, stage, -1 AS d FROM old_rows WHERE status = 'done'
            UNION ALL SELECT run_id, stage, 1 AS d FROM new_rows WHERE status = 'done') x
        GROUP BY run_id, stage HAVING sum(d) <> 0 ORDER BY 1, 3
        {_UPSERT_TALLY};""",
    "work_tally_delete": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'work_done', stage, -count(*), 0, 0, 0 FROM old_rows
        WHERE status = 'done' GROUP BY run_id, stage ORDER BY 1, 3
        {_UPSERT_TALLY};""",
}
_NEW = "REFERENCING NEW TABLE AS new_rows"
POSTGRES_TRIGGERS = {
    "curation_tiles_tally_insert": f"AFTER INSERT ON curation_tiles {_NEW}",
    "curation_tiles_tally_update": (
        "AFTER UPDATE ON curation_tiles REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "curation_after_revision": f"AFTER INSERT ON caption_revisions {_NEW}",
    "curation_after_review": f"AFTER INSERT ON reviews {_NEW}",
    "curation_after_selection": f"AFTER INSERT ON selections {_NEW}",
    "work_tally_insert": f"AFTER INSERT ON work_items {_NEW}",
    "work_tally_update": (
        "AFTER UPDATE ON work_items REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "work_tally_delete": "AFTER DELETE ON work_items REFERENCING OLD TABLE AS old_rows",
}
TABLE_OF = {
    "curation_tiles_tally_insert": "curation_tiles",
    "curation_tiles_tally_update": "curation_tiles",
    "curation_after_revision": "caption_revisions",
    "curation_after_review": "reviews",
    "curation_after_selection": "selections",
    "work_tally_insert": "work_items",
    "work_tally_update": "work_items",
    "work_tally_delete": "work_items",
}


def _postgres_trigger(name: str) -> tuple[str, str]:
    function = (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f"{POSTGRES_FUNCTIONS[name]}\n        RETURN NULL; END $$"
    )
    trigger = (
        f"CREATE TRIGGER {name} {POSTGRES_TRIGGERS[name]} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
    )
    return function, trigger


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _create_triggers(names: Sequence[str]) -> None:
    sqlite = dict(zip(SQLITE_TRIGGERS, SQLITE_TALLY_TRIGGERS + SQLITE_SOURCE_TRIGGERS, strict=True))
    for name in names:
        if _is_sqlite():
            op.execute(sqlite[name])
        else:
            for statement in _postgres_trigger(name):
                op.execute(statement)


def _tables() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_web_sessions_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_account_id"), "web_sessions", ["account_id"])
    op.create_index(op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"])
    op.create_table(
        "curation_tiles",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("tile_id", sa.Integer(), nullable=False),
        sa.Column("slide_id", sa.Integer(), nullable=False),
        sa.Column("organ", sa.String(length=64), nullable=True),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("final_revision_id", sa.Integer(), nullable=True),
        sa.Column("final_stage", sa.String(length=32), nullable=True),
        sa.Column("review", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_curation_tiles_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tiles.id"], name=op.f("fk_curation_tiles_tile_id_tiles")
        ),
        sa.PrimaryKeyConstraint("run_id", "tile_id", name=op.f("pk_curation_tiles")),
    )
    for col in ("review", "slide_id", "organ", "label", "final_stage", "reviewer", "score"):
        op.create_index(
            op.f(f"ix_curation_tiles_run_id_{col}_tile_id"),
            "curation_tiles",
            ["run_id", col, "tile_id"],
        )
    op.create_table(
        "run_tallies",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_tallies_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "kind", "key", name=op.f("pk_run_tallies")),
    )
    op.create_table(
        "review_holds",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("tile_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_review_holds_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tiles.id"], name=op.f("fk_review_holds_tile_id_tiles")
        ),
        sa.PrimaryKeyConstraint("run_id", "tile_id", name=op.f("pk_review_holds")),
    )
    op.create_index(op.f("ix_review_holds_account"), "review_holds", ["account"])
    op.create_table(
        "review_samples",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("tile_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_review_samples_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tiles.id"], name=op.f("fk_review_samples_tile_id_tiles")
        ),
        sa.PrimaryKeyConstraint("run_id", "tile_id", name=op.f("pk_review_samples")),
    )
    op.create_index(
        op.f("ix_selections_tile_id_run_id_round"), "selections", ["tile_id", "run_id", "round"]
    )
    op.create_index(
        "ix_work_items_open",
        "work_items",
        ["run_id", "stage", "status"],
        sqlite_where=sa.text("status <> 'done'"),
        postgresql_where=sa.text("status <> 'done'"),
    )


def upgrade() -> None:
    _tables()
    _create_triggers(SQLITE_TRIGGERS[:2])
    for statement in BACKFILL:
        op.execute(statement)
    _create_triggers(SQLITE_TRIGGERS[2:])


def downgrade() -> None:
    for name in reversed(SQLITE_TRIGGERS):
        if _is_sqlite():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE_OF[name]}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index("ix_work_items_open", table_name="work_items")
    op.drop_index(op.f("ix_selections_tile_id_run_id_round"), table_name="selections")
    for table in (
        "review_samples",
        "review_holds",
        "run_tallies",
        "curation_tiles",
        "web_sessions",
        "accounts",
    ):
        op.drop_table(table)
