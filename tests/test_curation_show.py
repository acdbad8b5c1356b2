"""``pathgen show``: a tile's revision chains with word diffs, provenance and reviews."""

from __future__ import annotations

import json

import pytest

from pathgen.cli.captions_cmd import _diff_text
from pathgen.curation import tile_history, word_diff
from pathgen.errors import StoreError
from pathgen.store.engine import session_scope
from tests.populate import RUN_ID, SUMMARIES, populate
from tests.test_export_webdataset import cli, edit, review


def test_word_diff() -> None:
    assert word_diff("a b c", "a b c") == [("equal", "a b c")]
    assert word_diff("with focal necrosis here", "with no necrosis here") == [
        ("equal", "with"),
        ("delete", "focal"),
        ("insert", "no"),
        ("equal", "necrosis here"),
    ]
    assert word_diff("", "new words") == [("insert", "new words")]
    assert word_diff("old", "") == [("delete", "old")]


async def test_history_chains_diffs_and_reviews(engine) -> None:
    pop = await populate(engine)
    await review(engine, pop.tile_ids[0], "accept")
    human = await edit(engine, pop.tile_ids[0], "Pleomorphic epithelial cells with focal necrosis.")
    async with session_scope(engine) as s:
        history = await tile_history(s, pop.tile_ids[0], RUN_ID)
    main, degraded = history.chains
    assert [st.stage for st in main] == ["describe", "revise", "summarize", "human"]
    assert main[-1].revision_id == human and main[-1].provider == "human"
    assert [st.stage for st in degraded] == ["describe", "degrade", "revise"]
    assert degraded[1].branch == "degraded" and degraded[1].edits[0]["op"] == "modify"
    assert main[0].diff is None
    assert ("delete", "focal") in degraded[1].diff and ("insert", "no") in degraded[1].diff
    summary = main[2]
    assert summary.text == SUMMARIES[0]
    assert summary.prompt == "summarize_v1@00000000"
    assert [r["decision"] for r in history.reviews] == ["accept", "edit"]

    styled = _diff_text(degraded[1])
    styles = {styled.plain[sp.start : sp.end]: str(sp.style) for sp in styled.spans}
    assert styles["focal"] == "red strike" and styles["no"] == "green"

    async with session_scope(engine) as s:
        with pytest.raises(StoreError, match="tile 999999"):
            await tile_history(s, 999999)


async def test_show_cli(engine, db_url: str) -> None:
    pop = await populate(engine)
    tile = pop.tile_ids[2]
    res = await cli(db_url, "show", str(tile), "--run", RUN_ID)
    assert res.exit_code == 0, res.output
    out = res.output
    for stage in ("describe", "revise", "summarize"):
        assert stage in out
    assert "offline/offline-clip" in out and "describe_v1@00000000" in out
    assert "<script>alert('x')</script>" in out  # printed verbatim, not as markup
    assert "unreviewed" in out
    assert out.index("describe") < out.index("summarize")
    assert "[-Detailed-]" in out  # piped output marks the diff without colour

    res = await cli(db_url, "show", str(tile), "--json")
    data = json.loads(res.output)
    (chain,) = data["chains"]
    assert [st["stage"] for st in chain] == ["describe", "revise", "summarize"]
    assert chain[1]["diff"][0] == ["delete", "Detailed"]
    assert chain[2]["input_tokens"] == 50 and chain[2]["latency_s"] == 0.1

    missing = await cli(db_url, "show", "424242")
    assert missing.exit_code == 1 and "tile 424242 does not exist" in missing.output


async def test_search_cli(engine, db_url: str) -> None:
    pop = await populate(engine)
    res = await cli(db_url, "captions", "search", "necrosis", "--stage", "summarize", "--json")
    assert res.exit_code == 0, res.output
    (hit,) = [json.loads(line) for line in res.output.splitlines()]
    assert hit["revision_id"] == pop.summarize_ids[0] and "[necrosis]" in hit["snippet"]
    table = await cli(db_url, "captions", "search", 'necrosis"; --', "--run", RUN_ID)
    assert table.exit_code == 0 and "necrosis" in table.output
    none = await cli(db_url, "captions", "search", "necrosis", "--run", "nope")
    assert "no matches" in none.output
