"""Exit codes and the last line of ``pathgen run`` (see pathgen/exitcodes.py and README).

A run whose items are all parked exits 3 and says per stage what is parked and why; a run
that cannot start exits 2 before any request reaches a provider, naming stage and setting.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import demo_template, item_count, pipeline_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_template(tmp_path_factory.mktemp("demo-template"))


def _describe_at(base_url: str, *lines: str) -> str:
    body = "\n".join(
        ['provider = "openai"', 'model = "mock-vlm"', f'base_url = "{base_url}"', *lines]
    )
    return f"[captioning.describe]\n{body}\n"


async def _invoke(args: list[str]):  # noqa: ANN202
    return await asyncio.to_thread(CliRunner().invoke, app, args)


async def test_all_parked_run_exits_3_with_a_summary_per_stage(
    template: Path, tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    with run_mock_server(latency=0.01, fault_plan=["refusal"] * 500) as srv:
        extra = _describe_at(srv.base_url, 'api_key_env = ""', "max_attempts = 1")
        config = pipeline_config(template, tmp_path / "w", db, extra)
        res = await _invoke(["run", str(config)])
        requests = srv.count()
    assert res.exit_code == 3, res.output
    parked = await item_count(db, "describe", ("failed",))
    assert parked > 0 and requests == parked  # each item asked once, then parked
    assert await item_count(db, "describe", ("done", "queued", "leased")) == 0
    out = res.output
    assert f"describe: {parked} parked (0 done)" in out
    assert f"{parked} x " in out and "refus" in out.lower()  # the one distinct error, counted
    last = out.strip().splitlines()[-1]
    assert f"run demo finished with {parked} parked item(s) (exit 3)" in last
    assert "pathgen retry demo" in last
    status = await _invoke(["-c", str(config), "status", "demo"])
    assert status.exit_code == 0 and "(parked)" in status.output


async def test_missing_key_variable_exits_2_before_any_request(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATHGEN_TEST_NO_SUCH_KEY", raising=False)
    db_file = tmp_path / "k.db"
    with run_mock_server(latency=0.01) as srv:
        extra = _describe_at(srv.base_url, 'api_key_env = "PATHGEN_TEST_NO_SUCH_KEY"')
        config = pipeline_config(template, tmp_path / "w", f"sqlite+aiosqlite:///{db_file}", extra)
        res = await _invoke(["run", str(config)])
        assert srv.count() == 0
    assert res.exit_code == 2, res.output
    assert "describe: captioning.describe.api_key_env" in res.output
    assert "PATHGEN_TEST_NO_SUCH_KEY is not set" in res.output
    assert not db_file.exists()  # nothing was claimed: the database was not even opened


async def test_unset_key_with_a_local_base_url_is_an_error_too(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No more silent placeholder key: a keyless server is said so with api_key_env = ""."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    extra = _describe_at("http://127.0.0.1:9/v1")
    config = pipeline_config(template, tmp_path / "w", "sqlite+aiosqlite:///x.db", extra)
    res = await _invoke(["check", str(config)])
    assert res.exit_code == 2 and "OPENAI_API_KEY is not set" in res.output
    assert 'api_key_env = ""' in res.output  # the way out is named


async def test_probe_404_exits_2_naming_model_and_url(template: Path, tmp_path: Path) -> None:
    db_file = tmp_path / "n.db"
    with run_mock_server(latency=0.01, fault_plan=["404"] * 10) as srv:
        extra = _describe_at(srv.base_url, 'api_key_env = ""')
        config = pipeline_config(template, tmp_path / "w", f"sqlite+aiosqlite:///{db_file}", extra)
        checked = await _invoke(["check", str(config)])  # no probe: nothing is sent
        assert checked.exit_code == 0, checked.output
        assert srv.count() == 0 and "ok:" in checked.output
        res = await _invoke(["run", str(config), "--check"])
        assert srv.count() == 1  # one probe for the one provider configuration
        probed = await _invoke(["check", str(config), "--probe"])
        assert srv.count() == 2
    for out in (res, probed):
        assert out.exit_code == 2, out.output
        assert "captioning.describe" in out.output and "HTTP 404" in out.output
        assert "'mock-vlm'" in out.output and srv.base_url in out.output
    assert not db_file.exists()


async def test_template_and_model_problems_exit_2_all_at_once(
    template: Path, tmp_path: Path
) -> None:
    extra = (
        '[captioning.revise]\ntemplate = "revise_v9"\n'
        '[captioning.summarize]\ntemplate = "describe_v1"\n'  # needs variables it is not given
    )
    config = pipeline_config(template, tmp_path / "w", "sqlite+aiosqlite:///x.db", extra)
    text = config.read_text().replace('name = "tiny_clip"', 'name = "no-such-arch"')
    config.write_text(text.replace("config_json = ", "# config_json = "))
    res = await _invoke(["run", str(config)])
    assert res.exit_code == 2, res.output
    out = res.output
    assert "cannot start (3 problem(s))" in out
    assert "revise: captioning.revise.template" in out and "'revise_v9' not found" in out
    assert "summarize: captioning.summarize.template" in out and "'report' is undefined" in out
    assert "embed: model: the model does not load" in out and "no-such-arch" in out


async def test_manifest_without_any_existing_slide_exits_2(template: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "gone.csv"
    manifest.write_text("path\nnowhere/a.svs\nnowhere/b.svs\n")
    config = pipeline_config(template, tmp_path / "w", "sqlite+aiosqlite:///x.db")
    res = await _invoke(["run", str(config), "--manifest", str(manifest), "--stages", "tile"])
    assert res.exit_code == 2 and "run.manifest: none of the 2 slide(s) exists" in res.output


def test_closed_stdout_is_not_a_database_problem(tmp_path: Path) -> None:
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # whoever reads our output is gone (`... | head` after its lines)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pathgen", "synth-slide", "--help"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        os.close(write)
    assert "database" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.returncode == 1


async def test_worker_checks_the_runs_it_serves_before_claiming(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    with run_mock_server(latency=0.01) as srv:
        extra = _describe_at(srv.base_url, 'api_key_env = "PATHGEN_TEST_WORKER_KEY"')
        config = pipeline_config(template, tmp_path / "w", db, extra)
        monkeypatch.setenv("PATHGEN_TEST_WORKER_KEY", "sk-test")
        made = await _invoke(["run", str(config), "--stages", "tile"])
        assert made.exit_code == 0, made.output
        monkeypatch.delenv("PATHGEN_TEST_WORKER_KEY")  # this machine lacks the key
        args = ["-c", str(config), "worker", "--run", "demo", "--stages", "describe"]
        res = await _invoke([*args, "--exit-when-idle"])
        assert srv.count() == 0
    assert res.exit_code == 2, res.output
    assert "run demo, describe: captioning.describe.api_key_env" in res.output
    assert "PATHGEN_TEST_WORKER_KEY is not set" in res.output
