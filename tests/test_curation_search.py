"""Full-text caption search on SQLite (FTS5) and Postgres (tsvector + GIN index)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pathgen.curation import query_phrases, search_captions
from pathgen.store.engine import session_scope
from pathgen.store.revisions import NewRevision, append_revisions
from tests.populate import SUMMARIES, populate


async def _search(engine, query: str, **kw):
    async with session_scope(engine) as session:
        return await search_captions(session, query, **kw)


async def test_finds_necrosis_with_snippet_and_filters(engine) -> None:
    pop = await populate(engine)
    hits = await _search(engine, "necrosis")
    # describe, revise, summarize of tile 0, plus the degraded pair's two revisions.
    assert {h.tile_id for h in hits} == {pop.tile_ids[0]}
    assert len(hits) == 5
    assert all("necrosis" in h.text.lower() for h in hits)
    assert all(("necrosis", True) in [(t.lower(), m) for t, m in h.snippet_parts()] for h in hits)
    assert hits == sorted(hits, key=lambda h: (-h.rank, h.revision_id))

    summaries = await _search(engine, "necrosis", stage="summarize")
    assert [h.revision_id for h in summaries] == [pop.summarize_ids[0]]
    assert summaries[0].text == SUMMARIES[0]
    assert summaries[0].snippet_text("[", "]").count("[necrosis]") == 1

    degraded = await _search(engine, "necrosis", stage="degrade")
    assert [h.branch for h in degraded] == ["degraded"]
    assert await _search(engine, "necrosis", run_id="other-run") == []
    assert len(await _search(engine, "necrosis", run_id=pop.run_id)) == 5
    assert len(await _search(engine, "necrosis", limit=2)) == 2


async def test_new_revisions_are_indexed_and_run_filter_separates_runs(engine) -> None:
    pop = await populate(engine)
    async with session_scope(engine) as s:
        await s.execute(
            text(
                "INSERT INTO runs (id, config, status, pathgen_version, created_at, updated_at)"
                " VALUES ('run-b', '{}', 'created', 'test', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    (rid,) = await append_revisions(
        engine,
        [
            NewRevision(
                tile_id=pop.tile_ids[1],
                run_id="run-b",
                stage="summarize",
                text="Extensive coagulative necrosis in a carcinoma.",
                provider="offline",
                model="m",
            )
        ],
    )
    in_b = await _search(engine, "necrosis", run_id="run-b")
    assert [h.revision_id for h in in_b] == [rid]
    assert rid not in {h.revision_id for h in await _search(engine, "necrosis", run_id=pop.run_id)}


@pytest.mark.parametrize(
    "query",
    [
        '"focal necrosis',  # unbalanced quote
        'necrosis" OR "',
        "necrosis AND NOT stroma) *",
        "necrosis'; DROP TABLE caption_revisions; --",
        "NEAR(necrosis focal) ^necrosis -necrosis +necrosis {text}: necrosis",
    ],
)
async def test_query_syntax_cannot_break_search(engine, query: str) -> None:
    pop = await populate(engine)
    hits = await _search(engine, query, stage="summarize")
    assert all("necrosis" in h.text.lower() for h in hits)
    # The table is intact and still searchable.
    assert [h.revision_id for h in await _search(engine, "necrosis", stage="summarize")] == [
        pop.summarize_ids[0]
    ]


async def test_phrases_markup_and_empty_queries(engine) -> None:
    pop = await populate(engine)
    phrase = await _search(engine, '"focal necrosis"', stage="summarize")
    assert [h.revision_id for h in phrase] == [pop.summarize_ids[0]]
    # Words in the wrong order are not the phrase (but match as separate words).
    assert await _search(engine, '"necrosis focal"', stage="summarize") == []
    assert len(await _search(engine, "necrosis focal", stage="summarize")) == 1

    markup = await _search(engine, "markup & <ampersand>!", stage="summarize")
    assert [h.revision_id for h in markup] == [pop.summarize_ids[2]]
    assert "<script>alert('x')</script>" in markup[0].text  # stored text is verbatim
    # Postgres' parser drops HTML tags from the index, SQLite's keeps the words: either
    # way a tag in the query is harmless.
    script = await _search(engine, "<script>alert('x')</script>", stage="summarize")
    assert {h.revision_id for h in script} <= {pop.summarize_ids[2]}

    assert await _search(engine, "") == []
    assert await _search(engine, '"" *** ()') == []
    assert await _search(engine, "zebrafish") == []
    # Stemmed English on both backends: "vessel" finds "small vessels".
    vessel = await _search(engine, "vessel", stage="summarize")
    assert [h.revision_id for h in vessel] == [pop.summarize_ids[1]]


def test_query_phrases() -> None:
    assert query_phrases('a "b c" d') == [["a"], ["b", "c"], ["d"]]
    assert query_phrases('x "open phrase') == [["x"], ["open", "phrase"]]
    assert query_phrases("NOT(a)*-b") == [["NOT"], ["a"], ["b"]]
    assert query_phrases('"" ;') == []
