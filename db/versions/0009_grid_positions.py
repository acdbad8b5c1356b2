"""Position index of the curation grid: captioned tiles per review state and tile-id block.

Revision ID: 0009
Revises: 0008

``run_tallies`` rows of kind ``review_block`` (``key`` = ``review:block``, ``block`` =
``tile_id // 1024``) count a run's captioned tiles per review state in each block of 1024
tile ids, kept by triggers on ``curation_tiles`` like the ``review`` tallies of 0008
(SQLite row triggers, Postgres statement triggers over transition tables). "Go to tile
#N" in the grid adds them up to find the block holding position N, then skips at most
one block's index entries, instead of N. Existing rows are backfilled.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tile ids per block (pathgen.web.grid.BLOCK).
BLOCK = 1024
KEY = "{review} || ':' || CAST({tile} / " + str(BLOCK) + " AS VARCHAR(20))"

BACKFILL = f"""INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
    SELECT run_id, 'review_block', {KEY.format(review="review", tile="tile_id")}, count(*),
        0, 0, 0
    FROM curation_tiles GROUP BY run_id, review, tile_id / {BLOCK}"""

SQLITE_TRIGGERS = {
    "curation_tiles_block_insert": f"""CREATE TRIGGER curation_tiles_block_insert
    AFTER INSERT ON curation_tiles
    BEGIN
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        VALUES (new.run_id, 'review_block', {KEY.format(review="new.review", tile="new.tile_id")},
                1, 0, 0, 0)
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + 1;
    END""",
    "curation_tiles_block_update": f"""CREATE TRIGGER curation_tiles_block_update
    AFTER UPDATE OF review ON curation_tiles
    WHEN old.review IS NOT new.review
    BEGIN
        UPDATE run_tallies SET n = n - 1
        WHERE run_id = old.run_id AND kind = 'review_block'
            AND key = {KEY.format(review="old.review", tile="old.tile_id")};
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        VALUES (new.run_id, 'review_block', {KEY.format(review="new.review", tile="new.tile_id")},
                1, 0, 0, 0)
        ON CONFLICT (run_id, kind, key) DO UPDATE SET n = n + 1;
    END""",
}

_UPSERT = "ON CONFLICT (run_id, kind, key) DO UPDATE SET n = run_tallies.n + excluded.n"
POSTGRES_FUNCTIONS = {
    "curation_tiles_block_insert": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'review_block', k, count(*), 0, 0, 0 FROM (
            SELECT run_id, {KEY.format(review="review", tile="tile_id")} AS k FROM new_rows) x
        GROUP BY run_id, k ORDER BY 1, 3
        {_UPSERT};""",
    "curation_tiles_block_update": f"""
        INSERT INTO run_tallies (run_id, kind, key, n, input_tokens, output_tokens, cost)
        SELECT run_id, 'review_block', k, sum(d), 0, 0, 0 FROM (
            SELECT run_id, {KEY.format(review="review", tile="tile_id")} AS k, -1 AS d
            FROM old_rows
            UNION ALL SELECT run_id, {KEY.format(review="review", tile="tile_id")}, 1
            FROM new_rows) x
        GROUP BY run_id, k HAVING sum(d) <> 0 ORDER BY 1, 3
        {_UPSERT};""",
}
POSTGRES_TRIGGERS = {
    "curation_tiles_block_insert": (
        "AFTER INSERT ON curation_tiles REFERENCING NEW TABLE AS new_rows"
    ),
    "curation_tiles_block_update": (
        "AFTER UPDATE ON curation_tiles REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
}


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    for name, sqlite in SQLITE_TRIGGERS.items():
        if _is_sqlite():
            op.execute(sqlite)
            continue
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f"{POSTGRES_FUNCTIONS[name]}\n        RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {name} {POSTGRES_TRIGGERS[name]} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute(BACKFILL)


def downgrade() -> None:
    for name in reversed(SQLITE_TRIGGERS):
        if _is_sqlite():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON curation_tiles")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DELETE FROM run_tallies WHERE kind = 'review_block'")
