"""Shared set-up for pipeline tests: demo slides + tiny CLIP once, a config per database."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from pathgen.runs.demo import prepare_demo
from pathgen.settings import Settings, load_settings
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import CaptionRevision, Selection, Tile, WorkItem

REPO = Path(__file__).resolve().parents[1]
PATHGEN = (
    str(REPO / ".venv" / "bin" / "pathgen") if (REPO / ".venv/bin/pathgen").exists() else "pathgen"
)


def demo_template(root: Path) -> Path:
    """Slides, model and manifest of the demo, prepared once under ``root``."""
    marker = root / ".ready"
    if not marker.exists():
        prepare_demo(root)
        marker.touch()
    return root


def pipeline_config(template: Path, work: Path, db_url: str, extra: str = "") -> Path:
    """A config using the template's slides and model, with its own database and data dir."""
    work.mkdir(parents=True, exist_ok=True)
    text = (template / "pathgen.toml").read_text()
    text = text.replace(
        f'url = "sqlite+aiosqlite:///{template / "pathgen.db"}"', f'url = "{db_url}"'
    )
    text = text.replace(f'data_dir = "{template / "data"}"', f'data_dir = "{work / "data"}"')
    text = text.replace(
        f'preview_dir = "{template / "previews"}"', f'preview_dir = "{work / "previews"}"'
    )
    config = work / "pathgen.toml"
    config.write_text(text + "\n" + extra)
    return config


def settings_for(config: Path) -> Settings:
    return load_settings(config)


async def result_counts(db_url: str, run_id: str) -> dict[str, Any]:
    """What a finished run produced, for comparing runs (ids differ, counts must not)."""
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            tiles = await s.scalar(select(func.count()).select_from(Tile))
            kept = await s.scalar(
                select(func.count()).select_from(Selection).where(Selection.kept.is_(True))
            )
            revs = {
                f"{stage}/{branch}/{status}": n
                for stage, branch, status, n in await s.execute(
                    select(
                        CaptionRevision.stage,
                        CaptionRevision.branch,
                        CaptionRevision.status,
                        func.count(),
                    )
                    .where(CaptionRevision.run_id == run_id)
                    .group_by(CaptionRevision.stage, CaptionRevision.branch, CaptionRevision.status)
                )
            }
            distinct = await s.scalar(
                select(func.count()).select_from(
                    select(
                        CaptionRevision.tile_id,
                        CaptionRevision.stage,
                        CaptionRevision.branch,
                        CaptionRevision.parent_id,
                    )
                    .where(CaptionRevision.run_id == run_id)
                    .distinct()
                    .subquery()
                )
            )
            items = {
                f"{stage}/{status}": n
                for stage, status, n in await s.execute(
                    select(WorkItem.stage, WorkItem.status, func.count())
                    .where(WorkItem.run_id == run_id)
                    .group_by(WorkItem.stage, WorkItem.status)
                )
            }
    finally:
        await engine.dispose()
    return {
        "tiles": tiles,
        "kept": kept,
        "revisions": revs,
        "items": items,
        "total_revisions": sum(revs.values()),
        "distinct_revisions": distinct,
    }


def start_pathgen(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [PATHGEN, *args],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=full_env,
        start_new_session=True,
    )


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the process and its group (no-op when it already exited)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


async def wait_for(predicate, timeout: float = 120.0, interval: float = 0.05) -> bool:  # noqa: ANN001
    """Poll an async predicate until it holds (True) or ``timeout`` passes (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def item_count(db_url: str, stage: str, statuses: tuple[str, ...]) -> int:
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            return int(
                await s.scalar(
                    select(func.count())
                    .select_from(WorkItem)
                    .where(WorkItem.stage == stage, WorkItem.status.in_(statuses))
                )
                or 0
            )
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return 0
    finally:
        await engine.dispose()


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
