"""Reviser recovery over a run's revisions (pure; the per-pair rules are in
:mod:`pathgen.stages.recovery`).

*Degraded pairs*: a ``degrade`` revision on the ``degraded`` branch whose parent is the
original description and whose ``edits`` list the planted errors, and the ``revise``
revision whose parent is that degrade revision. For each pair the reviser's output is
scored with :func:`~pathgen.stages.recovery.recovery`; shares of edits undone are summed
per edit type (add / delete / modify) and per reviser ``provider:model``.

*Correct descriptions*: a caption-branch ``revise`` revision whose parent is a ``describe``
revision. :func:`~pathgen.stages.recovery.unchanged_when_correct` says whether the
reviser left it essentially unchanged; ``changed_rate`` is the share it changed.

Example::

    summary = recovery_summary(run_data.revisions)
    summary["by_model"]["offline:m"]["by_op"]["modify"]["rate"]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pathgen.eval.records import RevisionRecord
from pathgen.stages.recovery import OPS, recovery, unchanged_when_correct


def _ok(rev: RevisionRecord) -> bool:
    return rev.status == "ok"


def degraded_triples(
    revisions: Sequence[RevisionRecord],
) -> list[tuple[RevisionRecord, RevisionRecord, RevisionRecord]]:
    """``(original, degrade, revise)`` triples found through parent links, by revise id."""
    by_id = {r.id: r for r in revisions}
    out = []
    for rev in revisions:
        if rev.stage != "revise" or not _ok(rev) or rev.parent_id is None:
            continue
        degrade = by_id.get(rev.parent_id)
        if degrade is None or degrade.stage != "degrade" or not _ok(degrade):
            continue
        original = by_id.get(degrade.parent_id) if degrade.parent_id is not None else None
        if original is None or not degrade.edits:
            continue
        out.append((original, degrade, rev))
    return sorted(out, key=lambda t: t[2].id)


def _empty_ops() -> dict[str, dict[str, Any]]:
    return {op: {"made": 0, "undone": 0, "rate": None} for op in OPS}


def _finish(bucket: dict[str, Any]) -> dict[str, Any]:
    for figures in bucket["by_op"].values():
        figures["rate"] = figures["undone"] / figures["made"] if figures["made"] else None
    made, undone = bucket["edits_made"], bucket["edits_undone"]
    bucket["rate"] = undone / made if made else None
    untouched = bucket.pop("_untouched")
    bucket["kept_correct_rate"] = bucket.pop("_kept") / untouched if untouched else None
    return bucket


def recovery_summary(revisions: Sequence[RevisionRecord]) -> dict[str, Any]:
    """Recovery on degraded copies and changes to correct descriptions, per reviser model.

    Returns ``{"degraded": {...overall}, "by_model": {model: {...}}, "correct": {...}}``
    where each degraded bucket has ``pairs``, ``edits_made``, ``edits_undone``, ``rate``,
    ``by_op`` and ``kept_correct_rate``, and each correct bucket has ``pairs``,
    ``unchanged_rate`` and ``changed_rate``.
    """

    def new_bucket() -> dict[str, Any]:
        return {
            "pairs": 0,
            "edits_made": 0,
            "edits_undone": 0,
            "by_op": _empty_ops(),
            "_untouched": 0,
            "_kept": 0,
        }

    overall = new_bucket()
    by_model: dict[str, dict[str, Any]] = defaultdict(new_bucket)
    for original, degrade, revise in degraded_triples(revisions):
        report = recovery(original.text, degrade.text, list(degrade.edits or []), revise.text)
        for bucket in (overall, by_model[f"{revise.provider}:{revise.model}"]):
            bucket["pairs"] += 1
            bucket["edits_made"] += report["edits_made"]
            bucket["edits_undone"] += report["edits_undone"]
            bucket["_untouched"] += report["untouched"]
            bucket["_kept"] += report["kept_correct"]
            for op, figures in report["by_op"].items():
                bucket["by_op"][op]["made"] += figures["made"]
                bucket["by_op"][op]["undone"] += figures["undone"]

    by_id = {r.id: r for r in revisions}
    correct: dict[str, list[bool]] = defaultdict(list)
    for rev in revisions:
        if rev.stage != "revise" or rev.branch != "caption" or not _ok(rev):
            continue
        parent = by_id.get(rev.parent_id) if rev.parent_id is not None else None
        if parent is None or parent.stage != "describe" or not _ok(parent):
            continue
        correct[f"{rev.provider}:{rev.model}"].append(unchanged_when_correct(parent.text, rev.text))
    all_flags = [flag for flags in correct.values() for flag in flags]

    def rates(flags: list[bool]) -> dict[str, Any]:
        n = len(flags)
        unchanged = sum(flags) / n if n else None
        return {
            "pairs": n,
            "unchanged_rate": unchanged,
            "changed_rate": None if unchanged is None else 1 - unchanged,
        }

    return {
        "degraded": _finish(overall),
        "by_model": {k: _finish(v) for k, v in sorted(by_model.items())},
        "correct": {
            "overall": rates(all_flags),
            "by_model": {k: rates(v) for k, v in sorted(correct.items())},
        },
    }
