"""Recovery and review metrics on revisions planted in the store, read back by gather."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import StoreError
from pathgen.eval.gather import load_run_data
from pathgen.eval.recovery_metrics import degraded_triples, recovery_summary
from pathgen.eval.review_metrics import review_summary
from pathgen.store.captions import human_edit, record_review
from pathgen.store.engine import session_scope
from pathgen.store.models import Run, Slide, Tile
from pathgen.store.revisions import NewRevision, insert_revisions

RUN = "eval-recovery"
ORIGINAL = (
    "The tumour is well differentiated with glandular architecture. Mitotic figures are rare. "
    "The stroma is desmoplastic. Necrosis is absent."
)
EDITS = [
    {
        "op": "modify",
        "sentence_index": 0,
        "original": "The tumour is well differentiated with glandular architecture.",
        "degraded": "The tumour is poorly differentiated with glandular architecture.",
        "term_from": "well differentiated",
        "term_to": "poorly differentiated",
    },
    {"op": "delete", "sentence_index": 1, "original": "Mitotic figures are rare."},
    {"op": "add", "sentence_index": 4, "degraded": "Perineural invasion is identified."},
    {
        "op": "modify",
        "sentence_index": 3,
        "original": "Necrosis is absent.",
        "degraded": "Necrosis is present.",
        "term_from": "absent",
        "term_to": "present",
    },
]
DEGRADED = (
    "The tumour is poorly differentiated with glandular architecture. The stroma is "
    "desmoplastic. Necrosis is present. Perineural invasion is identified."
)
# Undoes the first modify and the add; keeps "present" and does not restore the deletion.
PARTIAL = (
    "The tumour is well-differentiated and shows glandular architecture. The stroma is "
    "desmoplastic. Necrosis is present."
)


async def _tiles(engine: AsyncEngine, n: int) -> list[int]:
    async with session_scope(engine) as s:
        s.add(Run(id=RUN, config={}, status="completed", pathgen_version="test"))
        slide = Slide(path="/nowhere/s.svs", status="tiled")
        s.add(slide)
        await s.flush()
        tiles = [
            Tile(
                slide_id=slide.id,
                x=i * 100,
                y=0,
                size=100,
                read_level=0,
                mpp=0.5,
                tile_px=64,
                tissue_fraction=1.0,
            )
            for i in range(n)
        ]
        s.add_all(tiles)
        await s.flush()
        return [t.id for t in tiles]


def _rev(tile: int, stage: str, text: str, model: str, **kw: object) -> NewRevision:
    return NewRevision(
        tile_id=tile, run_id=RUN, stage=stage, text=text, provider="offline", model=model, **kw
    )  # type: ignore[arg-type]


async def _plant_pair(engine: AsyncEngine, tile: int, reviser: str, revised: str) -> None:
    async with session_scope(engine) as s:
        (d,) = await insert_revisions(s, [_rev(tile, "describe", ORIGINAL, "describer")])
        (g,) = await insert_revisions(
            s,
            [_rev(tile, "degrade", DEGRADED, "rules", parent_id=d, branch="degraded", edits=EDITS)],
        )
        await insert_revisions(
            s, [_rev(tile, "revise", revised, reviser, parent_id=g, branch="degraded")]
        )
        # A failed reviser call on the same degraded copy must not count.
        await insert_revisions(
            s,
            [
                _rev(
                    tile,
                    "revise",
                    ORIGINAL,
                    reviser,
                    parent_id=g,
                    branch="degraded",
                    status="failed",
                    error="timeout",
                )
            ],
        )


async def test_recovery_shares_from_planted_pairs(engine: AsyncEngine) -> None:
    t1, t2, t3, t4 = await _tiles(engine, 4)
    await _plant_pair(engine, t1, "reviser-a", PARTIAL)
    await _plant_pair(engine, t2, "reviser-b", ORIGINAL)  # undoes all four edits
    async with session_scope(engine) as s:
        # Caption path: a correct description left as is, and one rewritten.
        (d3,) = await insert_revisions(s, [_rev(t3, "describe", ORIGINAL, "describer")])
        (d4,) = await insert_revisions(s, [_rev(t4, "describe", ORIGINAL, "describer")])
        await insert_revisions(
            s,
            [
                _rev(t3, "revise", ORIGINAL, "reviser-a", parent_id=d3),
                _rev(t4, "revise", DEGRADED, "reviser-a", parent_id=d4),
            ],
        )

    data = await load_run_data(engine, RUN)
    assert len(degraded_triples(data.revisions)) == 2
    summary = recovery_summary(data.revisions)

    a = summary["by_model"]["offline:reviser-a"]
    assert (a["pairs"], a["edits_made"], a["edits_undone"], a["rate"]) == (1, 4, 2, 0.5)
    assert a["by_op"] == {
        "add": {"made": 1, "undone": 1, "rate": 1.0},
        "delete": {"made": 1, "undone": 0, "rate": 0.0},
        "modify": {"made": 2, "undone": 1, "rate": 0.5},
    }
    b = summary["by_model"]["offline:reviser-b"]
    assert (b["edits_made"], b["edits_undone"], b["rate"]) == (4, 4, 1.0)
    overall = summary["degraded"]
    assert (overall["pairs"], overall["edits_made"], overall["edits_undone"]) == (2, 8, 6)
    assert overall["by_op"]["modify"] == {"made": 4, "undone": 3, "rate": 0.75}
    assert overall["by_op"]["delete"] == {"made": 2, "undone": 1, "rate": 0.5}
    # The only untouched original sentence ("The stroma is desmoplastic.") survives both.
    assert overall["kept_correct_rate"] == 1.0

    correct = summary["correct"]
    # Only the caption-path revise revisions of t3 and t4 have a describe parent.
    assert correct["overall"] == {"pairs": 2, "unchanged_rate": 0.5, "changed_rate": 0.5}
    assert correct["by_model"]["offline:reviser-a"]["pairs"] == 2


async def test_review_rates_and_human_edit_distance(engine: AsyncEngine) -> None:
    tiles = await _tiles(engine, 4)
    async with session_scope(engine) as s:
        for t in tiles:
            (d,) = await insert_revisions(s, [_rev(t, "describe", ORIGINAL, "m")])
            await insert_revisions(
                s, [_rev(t, "summarize", "dense stroma with lymphocytes", "m", parent_id=d)]
            )
    async with session_scope(engine) as s:
        await record_review(s, run_id=RUN, tile_id=tiles[0], decision="reject", reviewer="ana")
        await record_review(s, run_id=RUN, tile_id=tiles[0], decision="accept", reviewer="ana")
        await record_review(s, run_id=RUN, tile_id=tiles[1], decision="reject", reviewer="bo")
        # 4 words -> 4 words with one substitution: normalised distance 1/4.
        await human_edit(
            s, run_id=RUN, tile_id=tiles[2], text="dense stroma with plasma", reviewer="ana"
        )
    data = await load_run_data(engine, RUN)
    review = review_summary(data)
    assert review["reviewed"] == 3  # newest decision per tile; tiles[3] unreviewed
    assert review["accept_rate"] == pytest.approx(1 / 3)
    assert review["reject_rate"] == pytest.approx(1 / 3)
    assert review["edit_rate"] == pytest.approx(1 / 3)
    assert review["captioned_tiles"] == 4
    assert review["human_edits"] == 1
    assert review["edit_distance"]["mean"] == pytest.approx(0.25)


async def test_unknown_run_is_a_store_error(engine: AsyncEngine) -> None:
    with pytest.raises(StoreError, match="nope"):
        await load_run_data(engine, "nope")
