"""Agreement between curators on the tiles two of them reviewed (the double-review sample).

For each tile, the first review of each of its first two reviewers makes a pair. The
second review is blind (:mod:`pathgen.curation.samples`): it judges the revision the
first curator judged, so both decisions and both edits are of the same text, made
independently. Accept/reject decisions are compared only when both judged the same
revision (reviews made outside the blind second review may not have); Cohen's kappa
corrects the observed agreement for chance. Where both edited, the word-level edit
distance between their texts says how far apart their corrections are.

Example::

    async with read_scope(engine) as session:
        report = await agreement(session, "run-1")
    report["kappa"], report["edit_distance"]["mean"]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.eval.review_metrics import describe
from pathgen.eval.text_metrics import normalised_levenshtein
from pathgen.store.models import CaptionRevision, Review, ReviewSample


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels (``None`` without pairs or variation).

    >>> cohen_kappa([("accept", "accept"), ("reject", "reject"), ("accept", "reject")])
    0.4
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in first) / (n * n)
    if expected == 1.0:
        return None
    return round((observed - expected) / (1 - expected), 6)


async def agreement(session: AsyncSession, run_id: str) -> dict[str, Any]:
    """Kappa of accept/reject and edit distances between two curators, per run."""
    sampled = select(ReviewSample.tile_id).where(ReviewSample.run_id == run_id)
    reviews = list(
        await session.scalars(
            select(Review)
            .where(Review.run_id == run_id, Review.tile_id.in_(sampled))
            .order_by(Review.tile_id, Review.id)
        )
    )
    firsts: dict[int, list[Review]] = {}
    for r in reviews:
        mine = firsts.setdefault(r.tile_id, [])
        if len(mine) < 2 and all(o.reviewer != r.reviewer for o in mine):
            mine.append(r)
    pairs = [tuple(v) for v in firsts.values() if len(v) == 2]
    human_ids = [r.revision_id for p in pairs for r in p if r.decision == "edit" and r.revision_id]
    texts = {}
    parents = {}
    if human_ids:
        for rev in await session.scalars(
            select(CaptionRevision).where(CaptionRevision.id.in_(human_ids))
        ):
            texts[rev.id] = rev.text
            parents[rev.id] = rev.parent_id

    def judged(r: Review) -> int | None:
        return parents.get(r.revision_id) if r.decision == "edit" else r.revision_id

    decisions = [
        (a.decision, b.decision)
        for a, b in pairs
        if a.decision != "edit" and b.decision != "edit" and judged(a) == judged(b)
    ]
    distances = [
        normalised_levenshtein(texts[a.revision_id], texts[b.revision_id])
        for a, b in pairs
        if a.decision == b.decision == "edit" and a.revision_id in texts and b.revision_id in texts
    ]
    return {
        "sampled_tiles": int(
            await session.scalar(select(func.count()).select_from(sampled.subquery())) or 0
        ),
        "double_reviewed": len(pairs),
        "decision_pairs": len(decisions),
        "observed_agreement": (
            round(sum(a == b for a, b in decisions) / len(decisions), 6) if decisions else None
        ),
        "kappa": cohen_kappa(decisions),
        "edit_pairs": len(distances),
        "edit_distance": describe(distances),
    }
