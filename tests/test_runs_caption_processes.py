"""`pathgen run` spreads online caption stages over helper processes, limits shared."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from pathgen.exitcodes import ExitCode
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.runs.shares import process_count, share, spread_stages
from pathgen.settings import Settings
from pathgen.testing.llm_server import run_mock_server
from pathgen.types import PIPELINE_STAGES
from tests.pipeline_helpers import (
    demo_template,
    kill9,
    pipeline_config,
    result_counts,
    settings_for,
    start_pathgen,
    wait_for,
)

ONLINE = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}


def _settings(**captioning: dict) -> Settings:
    return Settings.model_validate({"captioning": captioning, "workers": {}})


def test_shares_add_up_to_the_limits_and_summaries_stay_in_the_run() -> None:
    limits = {**ONLINE, "max_concurrency": 256, "requests_per_minute": 1000}
    s = Settings.model_validate(
        {
            "captioning": {"describe": limits, "revise": limits, "summarize": limits},
            "workers": {"caption_processes": 3},
        }
    )
    assert spread_stages(s, PIPELINE_STAGES) == ["describe", "revise"]
    assert process_count(s, PIPELINE_STAGES) == 3
    parts = [share(s, i, 3).captioning for i in range(3)]
    for stage in ("describe", "revise"):
        conc = [getattr(p, stage).max_concurrency for p in parts]
        rpm = [getattr(p, stage).requests_per_minute for p in parts]
        assert sum(conc) == 256 and sum(rpm) == 1000
        assert conc[0] < conc[1] and abs(conc[1] - conc[2]) <= 1  # the run also summarizes
    assert all(p.summarize.max_concurrency == 256 for p in parts)
    assert all(p.describe.model == "m" and p.describe.base_url == ONLINE["base_url"] for p in parts)


def test_what_is_not_spread() -> None:
    online = {**ONLINE, "max_concurrency": 512}
    # Default limits: one process.
    assert process_count(Settings(), PIPELINE_STAGES) == 1
    # Offline stages, rules degrade, batch mode and few-shot describe stay in the run.
    s = _settings(
        describe={**online, "mode": "batch"},
        revise={"max_concurrency": 512},
        degrade=online,
    )
    assert spread_stages(s, PIPELINE_STAGES) == []
    assert process_count(s, PIPELINE_STAGES) == 1
    few_shot = _settings(describe=online, few_shot_k=2, few_shot_references="refs.jsonl")
    assert spread_stages(few_shot, PIPELINE_STAGES) == []
    # "auto": one process per 128 calls, at most one per core; a limit smaller than the
    # process count caps it.
    assert process_count(_settings(describe=online), ["describe"]) == min(os.cpu_count() or 1, 4)
    tiny = Settings.model_validate(
        {
            "captioning": {"describe": {**ONLINE, "max_concurrency": 2}},
            "workers": {"caption_processes": 8},
        }
    )
    assert process_count(tiny, ["describe"]) == 2


def test_caption_processes_setting_is_checked(tmp_path: Path) -> None:
    from pathgen.errors import ConfigError
    from pathgen.settings import load_settings

    config = tmp_path / "pathgen.toml"
    config.write_text("[workers]\ncaption_processes = 0\n")
    with pytest.raises(ConfigError, match="caption_processes"):
        load_settings(config)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_template(tmp_path_factory.mktemp("demo-template"))


def _online_config(template: Path, work: Path, db_url: str, base_url: str, limit: int) -> Path:
    stage = (
        f'provider = "openai"\nmodel = "{{name}}"\nbase_url = "{base_url}"\n'
        f'api_key_env = ""\nmax_concurrency = {limit}\ntimeout_s = 30\n'
    )
    extra = "[workers]\ncaption_processes = 2\nlease_s = 60\n" + "".join(
        f"[captioning.{s}]\n" + stage.replace("{name}", f"mock-{s}")
        for s in ("describe", "revise", "summarize")
    )
    text = pipeline_config(template, work, db_url).read_text()
    text = text.replace("[captioning.instruct]\nenabled = true", "[captioning.instruct]\n")
    config = work / "online.toml"
    config.write_text(text + extra)
    return config


@pytest.mark.slow
async def test_run_in_two_processes_holds_limits_and_persists_each_call_once(
    template: Path, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"  # where the processes' shared tile folder is made
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with run_mock_server(latency=0.3, jitter=0.5, keep_bodies=False) as srv:
        config = _online_config(template, tmp_path, db_url, srv.base_url, limit=6)
        settings = settings_for(config)
        summary = await run_pipeline(
            settings, read_manifest(settings.run.manifest), show_progress=False
        )
        stats = srv.stats()
    assert summary.outcome.code == ExitCode.OK, summary.outcome
    assert list(temp.iterdir()) == []  # the shared tile folder went with the run
    assert summary.helpers.done > 0, "the helper process took no work"
    assert summary.helpers.by_stage.keys() <= {"describe", "revise"}
    assert summary.stats.done >= summary.helpers.done
    c = await result_counts(db_url, summary.run_id)
    kept = c["kept"]
    for key in ("describe/caption/ok", "revise/caption/ok", "summarize/caption/ok"):
        assert c["revisions"][key] == kept
    llm = sum(n for k, n in c["revisions"].items() if not k.startswith("degrade/"))
    assert llm == stats["count"]  # every call made one revision, none twice
    assert c["total_revisions"] == c["distinct_revisions"]
    # The limits are the run's, whatever the number of processes.
    assert max(stats["peak"].values()) <= 6
    assert stats["peak"]["mock-describe"] >= 4  # and both processes used their share


def _helpers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"caption_process" in cmd:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_helpers_stop_when_the_run_is_killed_and_a_rerun_finishes(
    template: Path, tmp_path: Path, db_url: str
) -> None:
    with run_mock_server(latency=1.0, keep_bodies=False, process=True) as srv:
        config = _online_config(template, tmp_path, db_url, srv.base_url, limit=4)
        log = tmp_path / "run.log"
        proc = start_pathgen(["-c", str(config), "run", "--log-format", "json"], log)
        try:

            async def helper_started() -> bool:
                return bool(_helpers_of(proc.pid)) and srv.stats()["count"] > 0

            assert await wait_for(helper_started, timeout=240), log.read_text()[-3000:]
            helpers = _helpers_of(proc.pid)
        finally:
            kill9(proc)

        async def helpers_gone() -> bool:
            return not any(_alive(p) for p in helpers)

        # The helper sees its stdin close, finishes its in-flight calls and exits.
        assert await wait_for(helpers_gone, timeout=60)
        rerun = start_pathgen(["-c", str(config), "run", "--log-format", "json"], log)
        assert await asyncio.to_thread(rerun.wait, 600) == 0, log.read_text()[-3000:]
        stats = srv.stats()
    c = await result_counts(db_url, "demo")
    llm = sum(n for k, n in c["revisions"].items() if not k.startswith("degrade/"))
    assert c["revisions"]["summarize/caption/ok"] == c["kept"]
    # A call answered after the kill may be answered again, never persisted twice.
    assert llm <= stats["count"]
    assert c["total_revisions"] == c["distinct_revisions"]
