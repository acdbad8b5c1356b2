"""Seed-project methods in the pipeline: multi-model fusion and few-shot describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.stages import fuse_extractive
from pathgen.store.captions import record_review
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import CaptionRevision
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import demo_template, pipeline_config, settings_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_template(tmp_path_factory.mktemp("demo-template"))


def test_fuse_extractive_keeps_majority_findings() -> None:
    fused = fuse_extractive(
        [
            "Tumour cells form solid nests. Necrosis is present. Mitoses are frequent.",
            "Solid nests of tumour cells are seen. Necrosis is present. Lymphocytes are sparse.",
            "Tumour cells form solid nests. Necrosis is absent.",
        ]
    )
    assert fused == "Tumour cells form solid nests. Necrosis is present."


async def _revisions(db_url: str, run_id: str) -> list[CaptionRevision]:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            return list(
                await s.scalars(
                    select(CaptionRevision)
                    .where(CaptionRevision.run_id == run_id)
                    .order_by(CaptionRevision.id)
                )
            )
    finally:
        await engine.dispose()


async def test_fusion_merges_several_describers(template: Path, tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'f.db'}"
    with run_mock_server(latency=0.01) as srv:
        extra = (
            "[[captioning.describers]]\n"
            f'provider = "openai"\nmodel = "second-vlm"\nbase_url = "{srv.base_url}"\n'
            'api_key_env = ""\n'
        )
        settings = settings_for(pipeline_config(template, tmp_path, db_url, extra))
        summary = await run_pipeline(
            settings, read_manifest(settings.run.manifest), show_progress=False
        )
    assert summary.outcome.finished
    revs = await _revisions(db_url, summary.run_id)
    by_id = {r.id: r for r in revs}
    fused = [r for r in revs if r.stage == "fuse"]
    assert fused and all(r.status == "ok" for r in fused)
    for f in fused:
        parents = [by_id[p] for p in f.parent_ids]
        assert {p.stage for p in parents} == {"describe"}
        assert {p.model for p in parents} == {"second-vlm", parents[0].model} and len(parents) == 2
        assert {p.tile_id for p in parents} == {f.tile_id}
    revised = [r for r in revs if r.stage == "revise" and r.branch == "caption"]
    assert {by_id[r.parent_id].stage for r in revised} == {"fuse"}
    degraded = [r for r in revs if r.stage == "degrade"]
    assert {by_id[r.parent_id].stage for r in degraded} == {"fuse"}


async def test_few_shot_examples_come_from_reviewed_tiles(template: Path, tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    first = settings_for(pipeline_config(template, tmp_path / "a", db_url))
    entries = read_manifest(first.run.manifest)
    s1 = await run_pipeline(first, entries, show_progress=False)
    finals = [r for r in await _revisions(db_url, s1.run_id) if r.stage == "summarize"]
    accepted = finals[:3]
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            for r in accepted:
                await record_review(
                    s,
                    run_id=s1.run_id,
                    tile_id=r.tile_id,
                    decision="accept",
                    reviewer="ana",
                    revision_id=r.id,
                )
    finally:
        await engine.dispose()

    with run_mock_server(latency=0.01) as srv:
        extra = (
            "[captioning.describe]\n"
            f'provider = "openai"\nmodel = "vlm"\nbase_url = "{srv.base_url}"\n'
            'api_key_env = ""\n'
        )
        cfg = pipeline_config(template, tmp_path / "b", db_url, extra)
        cfg.write_text(
            cfg.read_text()
            .replace('name = "demo"', 'name = "demo-fewshot"')
            .replace("degrade_copies = 1", "degrade_copies = 1\nfew_shot_k = 2")
        )
        second = settings_for(cfg)
        s2 = await run_pipeline(second, entries, show_progress=False)
        prompts = [json.dumps(r.body) for r in srv.requests()]
    assert s2.run_id == "demo-fewshot" and s2.outcome.finished
    described = [r for r in await _revisions(db_url, s2.run_id) if r.stage == "describe"]
    accepted_tiles = {r.tile_id for r in accepted}
    accepted_texts = {r.text for r in accepted}
    for rev in described:
        shots = rev.params["few_shot"]
        assert 1 <= len(shots) <= 2
        sources = {int(s["source"].split(":")[1]) for s in shots}
        assert sources <= accepted_tiles and rev.tile_id not in sources
    # The example captions really went into the describe prompts.
    assert any(
        text in p for p in prompts for text in [t.replace('"', '\\"') for t in accepted_texts]
    )
