"""Batch mode through files: export a stage's requests, import an output file written by
another program (hand-made here), idempotently, with failed and missing lines requeued."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import func, select

from pathgen.exitcodes import ExitCode
from pathgen.prompts import load_template
from pathgen.runs.batch_files import export_stage, import_results
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import open_store, run_pipeline
from pathgen.store.engine import session_scope
from pathgen.store.models import CaptionRevision, WorkItem, utcnow
from tests.pipeline_helpers import demo_template, pipeline_config, settings_for

STAGE = (
    'provider = "openai"\nmodel = "vlm-on-vllm"\nbase_url = "http://127.0.0.1:9/v1"\n'
    'api_key_env = ""\nprice_input_per_1k = 0.001\nprice_output_per_1k = 0.002\n'
)


def _answer(line: dict, text: str) -> dict:
    """One line of an OpenAI batch output file, as vLLM's run-batch writes it."""
    return {
        "id": f"vllm-{line['custom_id'][:6]}",
        "custom_id": line["custom_id"],
        "response": {
            "status_code": 200,
            "request_id": "req-1",
            "body": {
                "id": "cmpl-1",
                "object": "chat.completion",
                "model": line["body"]["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {"prompt_tokens": 400, "completion_tokens": 20, "total_tokens": 420},
            },
        },
        "error": None,
    }


async def _items(engine, stage: str) -> dict[str, str]:
    async with session_scope(engine) as s:
        rows = await s.execute(
            select(WorkItem.key, WorkItem.status).where(
                WorkItem.run_id == "demo", WorkItem.stage == stage
            )
        )
        return dict(rows.all())


async def _revisions(engine) -> list[CaptionRevision]:
    async with session_scope(engine) as s:
        rows = await s.scalars(
            select(CaptionRevision).where(
                CaptionRevision.run_id == "demo", CaptionRevision.stage == "describe"
            )
        )
        return list(rows)


async def test_export_then_import_a_hand_made_output_file(tmp_path: Path, db_url: str) -> None:
    template = demo_template(tmp_path / "template")
    config = pipeline_config(template, tmp_path / "work", db_url, f"[captioning.describe]\n{STAGE}")
    settings = settings_for(config)
    summary = await run_pipeline(
        settings,
        read_manifest(settings.run.manifest),
        stages=["tile", "embed", "select"],
        show_progress=False,
    )
    assert summary.outcome.code == ExitCode.OK
    engine = await open_store(settings)
    try:
        queued = await _items(engine, "describe")
        assert len(queued) > 4 and set(queued.values()) == {"queued"}

        exported = await export_stage(engine, settings, "demo", "describe", tmp_path / "in.jsonl")
        lines = [json.loads(x) for x in (tmp_path / "in.jsonl").read_text().splitlines()]
        assert exported.written == len(lines) == len(queued) and exported.reused == 0
        first = lines[0]
        assert first["method"] == "POST" and first["url"] == "/v1/chat/completions"
        assert first["body"]["model"] == "vlm-on-vllm"
        parts = first["body"]["messages"][-1]["content"]
        assert parts[-1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert set((await _items(engine, "describe")).values()) == {"leased"}  # reserved

        # another program's output: line 0 failed, line 1 missing, line 2 twice
        out = [
            {"custom_id": lines[0]["custom_id"], "response": None, "error": {"code": "oom"}},
            *[_answer(x, f"Sheets of tumour cells number {i} here.") for i, x in enumerate(lines)][
                2:
            ],
            _answer(lines[2], "A second answer for the same item."),
        ]
        (tmp_path / "out.jsonl").write_text("".join(json.dumps(x) + "\n" for x in out))

        report = await import_results(engine, settings, "demo", tmp_path / "out.jsonl")
        assert (report.done, report.failed, report.skipped, report.released) == (
            len(lines) - 2,
            1,
            1,
            1,
        )
        revs = [r for r in await _revisions(engine) if r.status == "ok"]
        assert len(revs) == len(lines) - 2
        assert {r.params["batch_id"] for r in revs} == {exported.batch_id}
        assert all(r.provider == "openai" and r.model == "vlm-on-vllm" for r in revs)
        assert {r.template_hash for r in revs} == {load_template("describe_v1").sha256}
        assert all(r.input_tokens == 400 and r.cost > 0 for r in revs)
        status = await _items(engine, "describe")
        assert sorted(status.values()).count("done") == len(lines) - 2
        assert sum(v == "queued" for v in status.values()) == 2  # the failed and the missing
        follow = await _items(engine, "revise")
        assert len(follow) == len(lines) - 2  # the next stage is queued as after online calls

        again = await import_results(engine, settings, "demo", tmp_path / "out.jsonl")
        assert again.done == 0 and again.skipped == len(out)
        assert len(await _revisions(engine)) == len(revs) + 0  # nothing written twice

        # the two requeued items go out in the next batch (the failed one after its backoff)
        async with session_scope(engine) as s:
            ready = await s.scalar(
                select(func.max(WorkItem.available_at)).where(
                    WorkItem.stage == "describe", WorkItem.status == "queued"
                )
            )
        await asyncio.sleep(max(0.0, (ready - utcnow()).total_seconds()) + 0.05)
        second = await export_stage(engine, settings, "demo", "describe", tmp_path / "in2.jsonl")
        lines2 = [json.loads(x) for x in (tmp_path / "in2.jsonl").read_text().splitlines()]
        assert second.written == 2 and second.batch_id != exported.batch_id
        (tmp_path / "out2.jsonl").write_text(
            "".join(
                json.dumps(_answer(x, "Glands lined by columnar cells.")) + "\n" for x in lines2
            )
        )
        assert (await import_results(engine, settings, "demo", tmp_path / "out2.jsonl")).done == 2
        assert set((await _items(engine, "describe")).values()) == {"done"}
        ok = [r for r in await _revisions(engine) if r.status == "ok"]
        assert len(ok) == len(lines) == len({r.tile_id for r in ok})
    finally:
        await engine.dispose()
