"""Batch mode through the OpenAI Batch API on the local test server, on SQLite and
Postgres: same revisions as online; failed lines and an expired batch redone once;
a run killed after submitting polls its batches instead of submitting them again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pathgen.exitcodes import ExitCode
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import CaptionRevision, LLMBatch
from pathgen.testing.batch_api import BatchAPI
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import (
    demo_template,
    kill9,
    pipeline_config,
    result_counts,
    settings_for,
    start_pathgen,
    wait_for,
)

pytestmark = pytest.mark.slow
PAID = ("describe", "revise", "summarize")


def _config(
    tmp_path: Path, db_url: str, base_url: str, name: str, batch: bool, provider: str = "openai"
) -> Path:
    stage = (
        f'provider = "{provider}"\nmodel = "mock-vlm"\nbase_url = "{base_url}"\napi_key_env = ""\n'
        "price_input_per_1k = 0.001\nprice_output_per_1k = 0.002\n"
    )
    if batch:
        stage += 'mode = "batch"\nbatch_poll_s = 0.1\nbatch_wait_s = 0.5\n'
    extra = "[workers]\nmax_attempts = 6\n"
    extra += "".join(f"[captioning.{s}]\n{stage}" for s in PAID)
    config = pipeline_config(demo_template(tmp_path / "template"), tmp_path / name, db_url, extra)
    config.write_text(config.read_text().replace('name = "demo"', f'name = "{name}"'))
    return config


async def _run(config: Path) -> ExitCode:
    settings = settings_for(config)
    summary = await run_pipeline(
        settings, read_manifest(settings.run.manifest), show_progress=False
    )
    return summary.outcome.code


async def _batch_ids(db_url: str, run_id: str) -> tuple[set[str], list[LLMBatch]]:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            revs = await s.scalars(
                select(CaptionRevision).where(
                    CaptionRevision.run_id == run_id, CaptionRevision.stage.in_(PAID)
                )
            )
            ids = {str((r.params or {}).get("batch_id")) for r in revs}
            rows = list(await s.scalars(select(LLMBatch).where(LLMBatch.run_id == run_id)))
            return ids, rows
    finally:
        await engine.dispose()


def _per_item(api: BatchAPI) -> Counter[str]:
    """How many times each work item was submitted (custom_id is ``<item>|<lease>``)."""
    out: Counter[str] = Counter()
    for custom_id, n in api.submitted.items():
        out[custom_id.split("|", 1)[0]] += n
    return out


def _compare(online: dict, batch: dict) -> None:
    assert batch["revisions"] == online["revisions"]
    assert batch["total_revisions"] == batch["distinct_revisions"], "an item written twice"
    assert all(k.endswith("/done") for k in batch["items"]), batch["items"]


@pytest.mark.parametrize("provider", ["openai", "mistral"])
async def test_batch_run_matches_online(tmp_path: Path, db_url: str, provider: str) -> None:
    api = BatchAPI(delay=0.3)
    with run_mock_server(batch_api=api) as srv:
        online = _config(tmp_path, db_url, srv.base_url, "online", False, provider)
        assert await _run(online) == 0
        online_calls = srv.count()
        batched = _config(tmp_path, db_url, srv.base_url, "batched", True, provider)
        assert await _run(batched) == 0
        batch_paths = {r.path for r in srv.requests(bodies=False)[online_calls:]}
    _compare(await result_counts(db_url, "online"), await result_counts(db_url, "batched"))
    assert "/v1/chat/completions" not in batch_paths  # every call went through batches
    assert ("/v1/batch/jobs" in batch_paths) == (provider == "mistral")
    ids, rows = await _batch_ids(db_url, "batched")
    assert ids == {r.provider_batch_id for r in rows if r.result and r.result["done"]}
    assert {r.state for r in rows} == {"done"} and {r.stage for r in rows} == set(PAID)
    assert set(_per_item(api).values()) == {1}  # each item submitted exactly once


async def test_failed_lines_an_expired_and_a_cancelled_batch_are_redone_once(
    tmp_path: Path, db_url: str
) -> None:
    api = BatchAPI(delay=0.2, fail_every=10, expire={0}, cancel={1})
    with run_mock_server(batch_api=api) as srv:
        assert await _run(_config(tmp_path, db_url, srv.base_url, "online", False)) == 0
        assert await _run(_config(tmp_path, db_url, srv.base_url, "batched", True)) == 0
    _compare(await result_counts(db_url, "online"), await result_counts(db_url, "batched"))
    _, rows = await _batch_ids(db_url, "batched")
    statuses = Counter(r.provider_status for r in rows)
    assert statuses["expired"] == 1 and statuses["cancelled"] == 1  # recorded
    assert statuses["completed"] >= 1
    assert sum(r.result["failed"] for r in rows if r.result) > 0  # the 10% failed lines
    assert sum(r.result["released"] for r in rows if r.result) > 0  # lines that never ran
    assert max(_per_item(api).values()) >= 2  # those were sent again, in a new batch


async def test_killed_after_submit_the_rerun_polls_instead_of_resubmitting(
    tmp_path: Path, db_url: str
) -> None:
    api = BatchAPI(delay=4.0)  # long enough to kill the run while its batch is pending
    with run_mock_server(batch_api=api) as srv:
        config = _config(tmp_path, db_url, srv.base_url, "batched", True)
        proc = start_pathgen(["-c", str(config), "run", "--log-format", "json"], tmp_path / "log")

        async def submitted() -> bool:
            try:
                _, rows = await _batch_ids(db_url, "batched")
            except Exception:  # noqa: BLE001 - the schema may not exist yet
                return False
            return any(r.state == "submitted" for r in rows)

        assert await wait_for(submitted, timeout=180), (tmp_path / "log").read_text()[-2000:]
        kill9(proc)
        before = Counter(_per_item(api))
        assert await _run(config) == 0
    after = _per_item(api)
    assert before and all(after[k] == 1 for k in before), "an item was submitted twice"
    assert set(after.values()) == {1}
    _, rows = await _batch_ids(db_url, "batched")
    assert {r.state for r in rows} == {"done"}
    counts = await result_counts(db_url, "batched")
    assert counts["total_revisions"] == counts["distinct_revisions"]
    assert all(k.endswith("/done") for k in counts["items"]), counts["items"]


async def test_budget_limits_what_batches_take(tmp_path: Path, db_url: str) -> None:
    api = BatchAPI(delay=0.1)
    with run_mock_server(batch_api=api) as srv:
        config = _config(tmp_path, db_url, srv.base_url, "batched", True)
        text = config.read_text()
        config.write_text(
            text.replace('[run]\nname = "batched"', '[run]\nname = "batched"\nmax_cost_usd = 0.004')
        )
        assert await _run(config) == ExitCode.BUDGET
        engine = make_engine(db_url)
        try:
            async with session_scope(engine) as s:
                spent = await s.scalar(
                    select(func.sum(CaptionRevision.cost)).where(
                        CaptionRevision.run_id == "batched"
                    )
                )
        finally:
            await engine.dispose()
        assert 0 < spent <= 0.004  # one claimer (the batch driver): the limit holds exactly
        config.write_text(text)  # no limit: the rerun finishes
        assert await _run(config) == ExitCode.OK
    counts = await result_counts(db_url, "batched")
    assert counts["total_revisions"] == counts["distinct_revisions"]
    assert all(k.endswith("/done") for k in counts["items"]), counts["items"]
