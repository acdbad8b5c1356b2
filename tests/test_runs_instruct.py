"""The instruct stage against the local OpenAI-style server: retries, parking, exactly-once."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from pathgen.runs import queue
from pathgen.runs.pipeline import build_handlers
from pathgen.runs.queue import NewWork
from pathgen.runs.resources import RunResources
from pathgen.runs.worker import Worker
from pathgen.settings import Settings
from pathgen.store.engine import session_scope
from pathgen.store.models import InstructItem, Run, WorkItem
from pathgen.store.revisions import NewRevision, append_revisions
from pathgen.testing.llm_server import run_mock_server
from tests.populate import populate

ITEMS = {
    "items": [
        {"type": "open", "question": "What is seen?", "answer": "Sheets of cells."},
        {"type": "yesno", "question": "Is necrosis present?", "answer": "Yes. Focal necrosis."},
        {"type": "choice", "question": "Which?", "options": ["a", "b", "c"], "answer": "A"},
    ]
}
VERDICTS = {
    "verdicts": [
        {"item": 1, "supported": True},
        {"item": 2, "supported": False, "reason": "planted: unsupported"},
        {"item": 3, "supported": True},
    ]
}
REPLIES = [
    ("BADJSON", "I would rather write prose."),
    ("Write question-answer pairs", json.dumps(ITEMS)),
    ("Judge each numbered item", json.dumps(VERDICTS)),
]


async def _run(engine, settings: Settings, run_id: str) -> None:
    res = RunResources(settings, engine)
    try:
        worker = Worker(
            engine, build_handlers(res, ["instruct"]), run_id=run_id, exit_when_idle=True
        )
        await worker.run()
    finally:
        await res.aclose()


async def _items(engine, run_id: str) -> list[InstructItem]:
    async with session_scope(engine) as s:
        return list(
            await s.scalars(
                select(InstructItem).where(InstructItem.run_id == run_id).order_by(InstructItem.id)
            )
        )


async def test_retries_parking_and_exactly_once(engine, tmp_path) -> None:
    pop = await populate(engine)
    tiles = pop.tile_ids
    faults = {tiles[0]: "[[fault:500*1]]", tiles[1]: "[[fault:400]]", tiles[2]: "BADJSON"}
    newest = await append_revisions(
        engine,
        [
            NewRevision(tile_id=t, run_id=pop.run_id, stage="revise", text=f"Sheets. {m}",
                        provider="offline", model="m")
            for t, m in faults.items()
        ],
    )  # fmt: skip
    with run_mock_server(latency=0.01, replies=REPLIES) as srv:
        stage = {
            "enabled": True, "provider": "openai", "model": "mock-llm", "base_url": srv.base_url,
            "api_key_env": "", "max_attempts": 2, "timeout_s": 5, "with_image": True,
        }  # fmt: skip
        settings = Settings.model_validate(
            {
                "database": {"url": str(engine.url)},
                "run": {"data_dir": str(tmp_path)},
                "captioning": {"instruct": stage},
            }
        )
        async with session_scope(engine) as s:
            await s.execute(
                update(Run).where(Run.id == pop.run_id).values(config=settings.snapshot())
            )
            await queue.enqueue(s, pop.run_id, [NewWork("instruct", str(t)) for t in tiles])
        await _run(engine, settings, pop.run_id)
        first = await _items(engine, pop.run_id)
        requests = srv.count()

        async with session_scope(engine) as s:
            items = {
                w.key: w
                for w in await s.scalars(select(WorkItem).where(WorkItem.stage == "instruct"))
            }
        done = [t for t in tiles if items[str(t)].status == "done"]
        assert sorted(done) == sorted([tiles[0], *tiles[3:]])
        # 4 done tiles x (items + judge), the 500s once more each, the 400, the bad JSON
        assert requests == 4 * 2 + 2 + 1 + 1
        assert items[str(tiles[1])].status == "failed" and "400" in items[str(tiles[1])].last_error
        assert "BadOutput" in items[str(tiles[2])].last_error
        assert items[str(tiles[2])].attempts == 1  # unusable output parks at once
        per_tile = {t: [i for i in first if i.tile_id == t] for t in tiles}
        assert not per_tile[tiles[1]] and not per_tile[tiles[2]]
        for t in done:
            kinds = sorted((i.kind, i.verify_status) for i in per_tile[t])
            assert kinds == [
                ("choice", "passed"),
                ("label", "passed"),
                ("label", "passed"),
                ("open", "passed"),
                ("yesno", "failed"),
            ]
        failed = next(i for i in per_tile[tiles[3]] if i.verify_status == "failed")
        assert failed.verify_reason == "judge: planted: unsupported"
        llm = next(i for i in per_tile[tiles[3]] if i.kind == "open")
        assert llm.provider == "openai" and llm.model == "mock-llm"
        assert llm.template_name == "instruct_v1" and len(llm.template_hash) == 64
        assert llm.input_tokens > 0 and llm.verifier == "judge:mock-llm"
        assert {i.revision_id for i in per_tile[tiles[0]]} == {newest[0]}  # newest revise

        # The tile goes with the generation request (a VLM), not with the judge's.
        bodies = [json.dumps(r.body) for r in srv.requests()]
        asks = [b for b in bodies if "Write question-answer pairs" in b]
        judged = [b for b in bodies if "Judge each numbered item" in b]
        assert asks and all("data:image/jpeg;base64," in b for b in asks)
        assert judged and not any("image_url" in b for b in judged)
        from pathgen.runs.progress import snapshot

        progress = {p.stage: p for p in (await snapshot(engine, pop.run_id)).stages}
        assert progress["instruct"].done == 4 and progress["instruct"].failed == 2
        assert progress["instruct"].input_tokens == sum(i.input_tokens for i in first) > 0

        # Exactly once: queued again, the finished tiles reuse their items (no call, no
        # row); only the two parked tiles call again (and are parked again).
        await queue.requeue_done(engine, pop.run_id, ["instruct"])
        await _run(engine, settings, pop.run_id)
        assert [i.id for i in await _items(engine, pop.run_id)] == [i.id for i in first]
        assert srv.count() == requests + 2
        # ... and ``force`` makes new ones.
        await queue.requeue_done(engine, pop.run_id, ["instruct"], force=True)
        await _run(engine, settings, pop.run_id)
        assert len(await _items(engine, pop.run_id)) == 2 * len(first)


async def test_offline_items_for_a_finished_run_and_disabled_stage(engine, tmp_path) -> None:
    """``--redo instruct`` on a run finished without the stage queues every captioned tile;
    the offline provider makes template items, all verified; a disabled stage makes none."""
    from pathgen.runs.handlers.instruct import queue_missing_instruct

    pop = await populate(engine)
    settings = Settings.model_validate(
        {
            "database": {"url": str(engine.url)},
            "run": {"data_dir": str(tmp_path)},
            "captioning": {"instruct": {"enabled": True}},
        }
    )
    async with session_scope(engine) as s:
        await s.execute(update(Run).where(Run.id == pop.run_id).values(config=settings.snapshot()))
    assert await queue_missing_instruct(engine, pop.run_id, 3) == len(pop.tile_ids)
    await _run(engine, settings, pop.run_id)
    items = await _items(engine, pop.run_id)
    assert {i.tile_id for i in items} == set(pop.tile_ids)
    assert {i.provider for i in items} == {"offline"} and {i.verifier for i in items} == {"rules"}
    assert all(i.verify_status == "passed" for i in items)
    assert {i.kind for i in items} >= {"open", "label"}

    off = settings.model_copy(deep=True)
    off.captioning.instruct.enabled = False
    async with session_scope(engine) as s:
        await s.execute(update(Run).where(Run.id == pop.run_id).values(config=off.snapshot()))
    await queue.requeue_done(engine, pop.run_id, ["instruct"], force=True)
    await _run(engine, off, pop.run_id)
    assert len(await _items(engine, pop.run_id)) == len(items)
