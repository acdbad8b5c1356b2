"""Config drift: a run's stored settings are never silently rewritten.

A change that cannot alter finished work (concurrency, rate limits, prices...) is taken
and said; a change that would (a threshold, a model, a prompt) stops the start with
exit 2, listing the keys and what to do; ``--redo STAGE`` takes that stage's changes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.errors import ConfigDrift
from pathgen.runs.drift import changes, is_operational, reconcile, stage_of
from pathgen.runs.graph import CAPTION_STAGES
from pathgen.runs.registry import default_run_id
from pathgen.settings import Settings
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import Run
from tests.pipeline_helpers import demo_template, pipeline_config


@pytest.mark.parametrize(
    ("key", "operational", "stage"),
    [
        ("captioning.describe.max_concurrency", True, "describe"),
        ("captioning.describe.price_cached_input_per_1k", True, "describe"),
        ("captioning.revise.max_cost_usd", True, "revise"),
        ("captioning.describe.batch_poll_s", True, "describe"),
        ("run.max_cost_usd", True, None),
        ("captioning.describers.1.requests_per_minute", True, "describe"),
        ("selection.llm.timeout_s", True, "select"),
        ("workers.lease_s", True, None),
        ("database.url", True, None),
        ("tiling.workers", True, "tile"),
        ("model.batch_size", True, "embed"),
        ("selection.duplicate_threshold", False, "select"),
        ("captioning.describe.model", False, "describe"),
        ("captioning.summarize.max_tokens", False, "summarize"),
        ("captioning.max_clip_tokens", False, "summarize"),
        ("captioning.degrade_copies", False, "degrade"),
        ("tiling.tissue.min_object_um2", False, "tile"),
        ("model.pretrained", False, "embed"),
        ("run.organ", False, "select"),
        ("budget.usd", False, None),  # a key no table names counts as output-shaping
    ],
)
def test_every_key_is_classified(key: str, operational: bool, stage: str | None) -> None:
    assert is_operational(key) is operational
    assert stage_of(key) == stage


def _snap(**sections: dict) -> dict:
    return Settings.model_validate(sections).snapshot()


def test_reconcile_takes_operational_and_redone_changes_only() -> None:
    old = _snap()
    faster = _snap(captioning={"describe": {"max_concurrency": 99}}, workers={"lease_s": 9})
    config, found = reconcile("r", old, faster)
    assert config == faster and {c.key for c in found} == {
        "captioning.describe.max_concurrency",
        "workers.lease_s",
    }
    other = _snap(captioning={"summarize": {"model": "m2"}}, selection={"top_k": 3})
    with pytest.raises(ConfigDrift) as info:
        reconcile("r", old, other, redo=["summarize"], caption_stages=CAPTION_STAGES)
    assert [k for k, *_ in info.value.changes] == ["selection.top_k"]
    assert "select" in str(info.value) and "--run-id" in str(info.value)
    summarize = _snap(captioning={"summarize": {"model": "m2"}})
    with pytest.raises(ConfigDrift, match="--redo summarize"):
        reconcile("r", old, summarize, caption_stages=CAPTION_STAGES)
    config, _ = reconcile("r", old, summarize, redo=["summarize"])
    assert config["captioning"]["summarize"]["model"] == "m2"
    hotter = _snap(captioning={"summarize": {"temperature": 0.9}})
    with pytest.raises(ConfigDrift, match="--force"):  # a redo would reuse the old outputs
        reconcile("r", old, hotter, redo=["summarize"])
    assert reconcile("r", old, hotter, redo=["summarize"], force=True)[0] == hotter


def test_moving_a_stage_between_online_and_batch_is_operational() -> None:
    def mode_change(stage: str, old: str, new: str) -> bool:
        stored = Settings.model_validate({"captioning": {stage: {"mode": old}}}).snapshot()
        new_s = Settings.model_validate({"captioning": {stage: {"mode": new}}}).snapshot()
        (change,) = changes(stored, new_s)
        return change.operational

    assert mode_change("describe", "rules", "batch")
    assert mode_change("degrade", "llm", "batch")
    assert not mode_change("degrade", "rules", "batch")  # rules make no LLM call at all
    assert not mode_change("degrade", "rules", "llm")


def test_list_entries_are_compared_one_by_one() -> None:
    one = {"provider": "offline", "model": "a"}
    old = _snap(captioning={"describers": [one]})
    new = _snap(captioning={"describers": [{**one, "max_concurrency": 3}]})
    assert [(c.key, c.operational) for c in changes(old, new)] == [
        ("captioning.describers.0.max_concurrency", True)
    ]
    more = _snap(captioning={"describers": [one, one]})
    assert "captioning.describers" in {c.key for c in changes(old, more)}


def test_derived_run_id_survives_operational_changes_only() -> None:
    base = Settings.model_validate({"run": {"manifest": "/data/slides.csv"}})
    faster = base.model_copy(
        update={"workers": base.workers.model_copy(update={"concurrency": 64})}
    )
    other = base.model_copy(
        update={"selection": base.selection.model_copy(update={"duplicate_threshold": 0.5})}
    )
    assert default_run_id(base) == default_run_id(faster)
    assert default_run_id(base) != default_run_id(other)
    assert default_run_id(base).startswith("slides-")


async def _stored(db: str) -> dict:
    engine = make_engine(db)
    try:
        async with session_scope(engine) as s:
            return (await s.get(Run, "demo")).config
    finally:
        await engine.dispose()


async def _run(config: Path, *extra: str):  # noqa: ANN202
    args = ["run", str(config), "--stages", "tile", "--log-format", "json", *extra]
    return await asyncio.to_thread(CliRunner().invoke, app, args)


@pytest.mark.slow
async def test_rerun_with_changed_settings(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "template")
    db = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    config = pipeline_config(template, tmp_path / "w", db)
    base = config.read_text()
    first = await _run(config)
    assert first.exit_code == 0, first.output
    stored = await _stored(db)

    config.write_text(base.replace("duplicate_threshold = 0.999", "duplicate_threshold = 0.95"))
    drift = await _run(config)
    assert drift.exit_code == 2, drift.output
    assert "selection.duplicate_threshold: 0.999 -> 0.95" in drift.output
    assert "rerun with --redo select" in drift.output  # a new selection round
    assert await _stored(db) == stored  # never silently rewritten

    config.write_text(base + "[captioning.describe]\nmax_concurrency = 3\n")
    faster = await _run(config)
    assert faster.exit_code == 0, faster.output
    assert "setting taken: captioning.describe.max_concurrency 16 -> 3 (operational)" in (
        faster.output
    )
    now = await _stored(db)
    assert now["captioning"]["describe"]["max_concurrency"] == 3  # taken, and said
    assert {**now, "captioning": stored["captioning"]} == stored

    tokens = base + "[captioning.summarize]\nmax_tokens = 64\n"
    config.write_text(tokens)
    refused = await _run(config)
    assert refused.exit_code == 2 and "--redo summarize" in refused.output
    unforced = await _run(config, "--redo", "summarize")
    assert unforced.exit_code == 2 and "--force" in unforced.output
    redone = await _run(config, "--redo", "summarize", "--force")
    assert redone.exit_code == 0, redone.output
    assert (await _stored(db))["captioning"]["summarize"]["max_tokens"] == 64
