"""A run whose captions carry a signal a tiny CLIP can learn: three tissue classes.

Each class has its own synthetic stain colours and nuclei (``TissueStyle``) and its own
caption, taken from the slide's manifest label; three slides per class are tiled by the
real tile stage, every tile gets its class caption as its final (summarize) revision, and
the run is exported by ``pathgen train-clip RUN`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from pathgen.embed.tiny import write_tiny_clip
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.settings import load_settings
from pathgen.slides import TissueStyle, write_synthetic_slide
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import RunSlide, Selection, Tile
from pathgen.store.revisions import NewRevision, insert_revisions

RUN_ID = "classes"
CLASSES = {
    "tumour": (
        TissueStyle(
            eosin=(200, 120, 190),
            hematoxylin=(120, 60, 160),
            nucleus=(50, 20, 90),
            nucleus_um=5.0,
            um2_per_nucleus=60.0,
        ),
        "Sheets of crowded atypical tumour cells with large dark nuclei.",
    ),
    "stroma": (
        TissueStyle(
            eosin=(240, 110, 150),
            hematoxylin=(225, 100, 150),
            nucleus=(150, 70, 120),
            nucleus_um=2.0,
            um2_per_nucleus=900.0,
        ),
        "Pink fibrous stroma with few small spindle nuclei.",
    ),
    "lymphoid": (
        TissueStyle(
            eosin=(170, 170, 225),
            hematoxylin=(90, 90, 200),
            nucleus=(30, 30, 120),
            nucleus_um=2.5,
            um2_per_nucleus=40.0,
        ),
        "Dense lymphoid infiltrate of small round blue lymphocytes.",
    ),
}
SLIDES_PER_CLASS = 2
SEEDS = ((12, 16), (18, 2), (35, 6))  # layouts with much tissue at this size


@dataclass(frozen=True)
class ClassRun:
    config: Path
    db_url: str
    run_id: str
    tiles: int


def write_class_run(root: Path) -> ClassRun:
    """Slides, manifest, tiny model and config under ``root``; tile them and caption every
    tile with its class caption (synchronous; uses its own event loop)."""
    import asyncio

    return asyncio.run(_write_class_run(root))


async def _write_class_run(root: Path) -> ClassRun:
    slides = root / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,organ"]
    for c, (label, (style, _)) in enumerate(CLASSES.items()):
        for i in range(SLIDES_PER_CLASS):
            path = slides / f"{label}-{i}.tiff"
            write_synthetic_slide(
                path, 1100, 1100, mpp=0.5, seed=SEEDS[c][i], tile=256, style=style
            )
            rows.append(f"{path.name},{label},breast")
    (slides / "slides.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config_json, checkpoint = write_tiny_clip(root / "model", seed=0)
    db_url = f"sqlite+aiosqlite:///{root / 'classes.db'}"
    config = root / "pathgen.toml"
    config.write_text(
        f"""[database]
url = "{db_url}"

[run]
name = "{RUN_ID}"
manifest = "{slides / "slides.csv"}"
data_dir = "{root / "data"}"

[tiling]
mpp = 0.5
tile_size = 160
min_tissue = 0.6

[tiling.tissue]
detection_mpp = 4.0
min_object_um2 = 10000.0

[model]
name = "tiny_clip"
config_json = "{config_json}"
pretrained = "{checkpoint}"
device = "cpu"
batch_size = 64
""",
        encoding="utf-8",
    )
    settings = load_settings(config)
    await run_pipeline(
        settings, read_manifest(settings.run.manifest), stages=["tile"], show_progress=False
    )
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            tiles = (
                await s.execute(
                    select(Tile.id, RunSlide.label)
                    .join(RunSlide, RunSlide.slide_id == Tile.slide_id)
                    .where(RunSlide.run_id == RUN_ID)
                    .order_by(Tile.id)
                )
            ).all()
            s.add_all(
                Selection(run_id=RUN_ID, tile_id=t, kept=True, reasons=["cluster"])
                for t, _ in tiles
            )
            await insert_revisions(
                s,
                [
                    NewRevision(
                        tile_id=t,
                        run_id=RUN_ID,
                        stage="summarize",
                        text=CLASSES[label][1],
                        provider="offline",
                        model="labels",
                        template_name="summarize_v1",
                        template_hash="0" * 64,
                    )
                    for t, label in tiles
                ],
            )
    finally:
        await engine.dispose()
    return ClassRun(config, db_url, RUN_ID, len(tiles))
