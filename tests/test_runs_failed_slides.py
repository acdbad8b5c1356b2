"""A slide that cannot be tiled parks its item (the run does not end "completed", exit 0);
fixing its manifest row and starting the run again tiles it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from pathgen.exitcodes import ExitCode
from pathgen.runs import registry
from pathgen.runs.manifest import SlideEntry
from pathgen.runs.outcome import run_outcome
from pathgen.runs.pipeline import build_handlers, open_store
from pathgen.runs.resources import RunResources
from pathgen.runs.worker import Worker
from pathgen.settings import Settings
from pathgen.store.engine import session_scope
from pathgen.store.models import Slide

CMU = Path("../shared/testdata/slides/CMU-1-Small-Region.svs").resolve()


def _png_without_mpp(path: Path) -> Path:
    """An H&E field as a PNG: a flat image records no µm/px."""
    import openslide

    with openslide.OpenSlide(str(CMU)) as slide:
        slide.read_region((0, 0), 0, slide.dimensions).convert("RGB").save(path)
    return path


async def _tile(settings: Settings, entries: list[SlideEntry]):  # noqa: ANN202
    engine = await open_store(settings)
    res = RunResources(settings, engine)
    try:
        await registry.ensure_run(engine, "r", settings)
        await registry.add_slides(engine, "r", entries, max_attempts=3)
        worker = Worker(engine, build_handlers(res, ["tile"]), run_id="r", exit_when_idle=True)
        await worker.run()
        outcome = await run_outcome(engine, "r", ["tile"], interrupted=False)
        async with session_scope(engine) as session:
            slide = (await session.scalars(select(Slide))).one()
        return outcome, slide
    finally:
        await res.aclose()
        await engine.dispose()


async def test_failed_slide_parks_then_tiles_once_its_manifest_row_is_fixed(
    tmp_path: Path,
) -> None:
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'f.db'}"},
            "run": {"data_dir": str(tmp_path / "data")},
        }
    )
    png = str(_png_without_mpp(tmp_path / "field.png"))
    outcome, slide = await _tile(settings, [SlideEntry(png)])
    assert outcome.code == ExitCode.PARKED and outcome.status == "parked"
    assert slide.status == "failed" and slide.error_reason == "no_mpp"
    tile = outcome.stages[0]
    assert (
        tile.parked == 1 and "no_mpp" in tile.errors[0][0] and "--assume-mpp" in tile.errors[0][0]
    )

    again, slide = await _tile(settings, [SlideEntry(png)])  # unchanged: stays parked
    assert again.code == ExitCode.PARKED and slide.status == "failed"

    fixed, slide = await _tile(settings, [SlideEntry(png, mpp=0.5)])
    assert fixed.code == ExitCode.OK, fixed.lines()
    assert slide.status == "tiled" and slide.mpp == 0.5 and slide.tile_count > 0
