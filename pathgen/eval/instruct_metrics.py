"""Instruct items of a run: type mix, yes/no balance and verification failures (pure).

Counts are over the run's current items (a curator's edit replaces its parent); the
yes/no balance is over the yes/no items that passed verification (what an export holds),
and over all of them.

Example::

    summary = instruct_summary(data.instruct)
    summary["yes_no"]["yes_share"], summary["by_kind"]["open"]["failed"]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pathgen.eval.records import InstructItemRecord
from pathgen.types import INSTRUCT_KINDS

TOP_REASONS = 10


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _reason_kind(reason: str | None) -> str:
    """The reason without its turn number and quoted specifics, to count alike failures."""
    text = re.sub(r"^turn \d+: ", "", reason or "no reason")
    return re.sub(r"'[^']*'", "'…'", text)


def instruct_summary(items: Sequence[InstructItemRecord]) -> dict[str, Any]:
    """``items``, ``by_kind`` (count, share, passed, failed), ``yes_no`` balance, ``failures``."""
    total = len(items)
    by_kind = {}
    for kind in INSTRUCT_KINDS:
        of_kind = [i for i in items if i.kind == kind]
        failed = sum(1 for i in of_kind if i.verify_status == "failed")
        by_kind[kind] = {
            "items": len(of_kind),
            "share": _share(len(of_kind), total),
            "passed": len(of_kind) - failed,
            "failed": failed,
        }
    yesno = [i for i in items if i.kind == "yesno"]
    passed = [a for i in yesno if i.verify_status == "passed" for a in i.yes_no]
    every = [a for i in yesno for a in i.yes_no]
    failures = [i for i in items if i.verify_status == "failed"]
    reasons = Counter(_reason_kind(i.verify_reason) for i in failures)
    conversations = [i.turns for i in items if i.kind == "conversation"]
    return {
        "items": total,
        "tiles": len({i.tile_id for i in items}),
        "by_kind": by_kind,
        "yes_no": {
            "passed": len(passed),
            "yes_share": _share(passed.count("yes"), len(passed)),
            "all": len(every),
            "yes_share_all": _share(every.count("yes"), len(every)),
        },
        "conversation_turns_mean": (
            round(sum(conversations) / len(conversations), 3) if conversations else None
        ),
        "failed": len(failures),
        "failed_rate": _share(len(failures), total),
        "failures": [{"reason": r, "items": n} for r, n in reasons.most_common(TOP_REASONS)],
        "examples": [
            {"item_id": i.id, "tile_id": i.tile_id, "kind": i.kind, "reason": i.verify_reason}
            for i in failures[:5]
        ],
        "cost": round(sum(i.cost for i in items), 6),
    }
