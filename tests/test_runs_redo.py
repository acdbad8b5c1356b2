"""Re-running caption stages: reuse same-config outputs, new revisions on change or --force."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from pathgen.errors import ConfigError
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import downstream, run_pipeline
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import CaptionRevision
from tests.pipeline_helpers import demo_template, pipeline_config, settings_for

pytestmark = pytest.mark.slow


async def _count(db_url: str, stage: str, statuses: tuple[str, ...] = ("ok",)) -> int:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            return int(
                await s.scalar(
                    select(func.count())
                    .select_from(CaptionRevision)
                    .where(CaptionRevision.stage == stage)
                )
            )
    finally:
        await engine.dispose()


def test_downstream_of_a_caption_stage() -> None:
    assert downstream(["revise"]) == ["revise", "summarize", "instruct"]
    assert downstream(["summarize", "describe"])[0] == "describe"
    assert downstream(["select"]) == []  # a new selection round queues its own work
    with pytest.raises(ConfigError, match="only select, describe"):
        downstream(["tile"])


async def test_redo_reuses_then_forces_then_follows_a_prompt_change(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "template")
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    config = pipeline_config(template, tmp_path / "w", db_url)
    settings = settings_for(config)
    entries = read_manifest(settings.run.manifest)
    await run_pipeline(settings, entries, show_progress=False)
    n = await _count(db_url, "summarize")
    assert n > 0

    again = await run_pipeline(settings, entries, show_progress=False, redo=["summarize"])
    assert again.stats.done == n and await _count(db_url, "summarize") == n  # reused

    await run_pipeline(settings, entries, show_progress=False, redo=["summarize"], force=True)
    assert await _count(db_url, "summarize") == 2 * n

    # A real change (rule-based degrade -> LLM-mode degrade) makes new revisions downstream.
    degraded = await _count(db_url, "degrade")
    revised = await _count(db_url, "revise", ("ok", "failed"))
    config.write_text(config.read_text() + '\n[captioning.degrade]\nmode = "llm"\n')
    await run_pipeline(settings_for(config), entries, show_progress=False, redo=["degrade"])
    new_degraded = await _count(db_url, "degrade") - degraded
    assert new_degraded > 0.8 * degraded  # LLM mode may fail on a very short description
    # each new degraded copy is revised again (a revision may fail, but it is stored)
    assert await _count(db_url, "revise", ("ok", "failed")) == revised + new_degraded
