"""A small, realistic store for export / curation / eval tests, on the real CMU H&E slide.

Six tiles of ``CMU-1-Small-Region.svs`` (336 px at 0.5 µm/px) with a describe → revise →
summarize chain each, and a degrade → revise pair on the first tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.store.engine import session_scope
from pathgen.store.models import Run, RunSlide, Selection, Slide, Tile
from pathgen.store.revisions import NewRevision, insert_revisions

SLIDE = Path(__file__).resolve().parents[2] / "shared/testdata/slides/CMU-1-Small-Region.svs"
RUN_ID = "demo-run"
SLIDE_MPP = 0.499
TILE_PX = 336
SIZE_L0 = round(TILE_PX * 0.5 / SLIDE_MPP)  # 337 level-0 pixels per tile side
# Level-0 origins on tissue (checked against the thumbnail).
ORIGINS = [(674, 674), (1011, 674), (674, 1011), (1011, 1011), (1348, 1348), (674, 1685)]
SUMMARIES = [
    "Sheets of pleomorphic epithelial cells with mitoses and focal necrosis.",
    "Dense fibrous stroma with scattered lymphocytes and small vessels.",
    "Caption with markup <script>alert('x')</script> & ampersand to check escaping.",
    "Glandular structures lined by columnar cells within loose stroma.",
    "Adipose tissue with thin fibrous septa and a few capillaries.",
    "Inflamed stroma with plasma cells, lymphocytes and haemorrhage.",
]


@dataclass
class Populated:
    run_id: str
    slide_id: int
    tile_ids: list[int]
    summarize_ids: list[int]


async def populate(engine: AsyncEngine, slide: Path = SLIDE) -> Populated:
    async with session_scope(engine) as s:
        s.add(
            Run(
                id=RUN_ID,
                config={"tiling": {"mpp": 0.5, "tile_size": TILE_PX}},
                status="completed",
                pathgen_version="test",
            )
        )
        sl = Slide(
            path=str(slide),
            fingerprint="f" * 64,
            vendor="aperio",
            width=2220,
            height=2967,
            mpp=SLIDE_MPP,
            mpp_source="openslide",
            level_count=1,
            status="tiled",
            tile_count=len(ORIGINS),
        )
        s.add(sl)
        await s.flush()
        s.add(RunSlide(run_id=RUN_ID, slide_id=sl.id, organ="breast", label="tumour"))
        tiles = [
            Tile(
                slide_id=sl.id,
                x=x,
                y=y,
                size=SIZE_L0,
                read_level=0,
                mpp=0.5,
                tile_px=TILE_PX,
                tissue_fraction=0.9,
            )
            for x, y in ORIGINS
        ]
        s.add_all(tiles)
        await s.flush()
        for i, t in enumerate(tiles):
            s.add(
                Selection(
                    run_id=RUN_ID,
                    tile_id=t.id,
                    kept=True,
                    reasons=["cluster"],
                    cluster_id=i,
                    score=0.3,
                )
            )
        summarize_ids = []
        for i, t in enumerate(tiles):
            common = dict(
                tile_id=t.id,
                run_id=RUN_ID,
                provider="offline",
                model="offline-clip",
                template_hash="0" * 64,
                input_tokens=50,
                output_tokens=30,
                latency_s=0.1,
                cost=0.0,
            )
            (d,) = await insert_revisions(
                s,
                [
                    NewRevision(
                        stage="describe",
                        template_name="describe_v1",
                        text=f"Detailed description {i}. {SUMMARIES[i]} Additional context.",
                        **common,
                    )
                ],
            )
            (r,) = await insert_revisions(
                s,
                [
                    NewRevision(
                        stage="revise",
                        template_name="revise_v1",
                        parent_id=d,
                        text=f"Revised description {i}. {SUMMARIES[i]}",
                        **common,
                    )
                ],
            )
            (m,) = await insert_revisions(
                s,
                [
                    NewRevision(
                        stage="summarize",
                        template_name="summarize_v1",
                        parent_id=r,
                        text=SUMMARIES[i],
                        **common,
                    )
                ],
            )
            summarize_ids.append(m)
            if i == 0:
                original = f"Detailed description {i}. {SUMMARIES[i]} Additional context."
                degraded = original.replace("focal necrosis", "no necrosis")
                (g,) = await insert_revisions(
                    s,
                    [
                        NewRevision(
                            stage="degrade",
                            template_name=None,
                            parent_id=d,
                            branch="degraded",
                            text=degraded,
                            edits=[
                                {
                                    "op": "modify",
                                    "sentence_index": 1,
                                    "original": "focal necrosis",
                                    "degraded": "no necrosis",
                                    "term_from": "focal necrosis",
                                    "term_to": "no necrosis",
                                }
                            ],
                            **common,
                        )
                    ],
                )
                await insert_revisions(
                    s,
                    [
                        NewRevision(
                            stage="revise",
                            template_name="revise_v1",
                            parent_id=g,
                            branch="degraded",
                            text=original,
                            **common,
                        )
                    ],
                )
    return Populated(RUN_ID, sl.id, [t.id for t in tiles], summarize_ids)
