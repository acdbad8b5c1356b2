"""How well a reviser undoes planted errors, and whether it leaves correct text alone.

Matching is fuzzy on normalised tokens (:func:`pathgen.stages.text.tokens`: lowercase,
split on anything that is not a letter or digit, so "well-differentiated" equals
"well differentiated"). *Content tokens* drop a short stopword list. The *containment*
of sentence A in sentence B is the share of A's content tokens found in B.

Per edit:

* ``add`` is undone when no revised sentence contains >= ``ADDED_GONE`` (0.5) of the added
  sentence's content tokens;
* ``delete`` is undone when some revised sentence contains >= ``RESTORED`` (0.6) of the
  deleted sentence's content tokens;
* ``modify`` is undone when, in the revised sentence that best matches the original
  sentence's other content tokens (containment >= ``REGION`` 0.5), ``term_from`` appears
  as a token sequence and ``term_to`` does not (an occurrence of one term inside the other,
  e.g. "haemorrhage" inside "no haemorrhage", does not count).

Example::

    report = recovery(original, degraded.text, degraded.edits, revised)
    report["edits_undone"], report["edits_made"], report["by_op"]["modify"]["rate"]
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

from pathgen.stages.text import content_tokens, split_sentences, tokens

ADDED_GONE = 0.5
RESTORED = 0.6
REGION = 0.5
UNCHANGED = 0.9
OPS = ("add", "delete", "modify")


def containment(needle: set[str], hay: set[str]) -> float:
    """Share of ``needle`` found in ``hay`` (1.0 for an empty needle)."""
    return len(needle & hay) / len(needle) if needle else 1.0


def _spans(seq: list[str], term: list[str]) -> list[tuple[int, int]]:
    n = len(term)
    if n == 0:
        return []
    return [(i, i + n) for i in range(len(seq) - n + 1) if seq[i : i + n] == term]


def has_term(sentence: str, term: str, other: str | None = None) -> bool:
    """``term`` is in ``sentence`` as a token run, not counting occurrences inside ``other``."""
    seq, want = tokens(sentence), tokens(term)
    blocked = _spans(seq, tokens(other)) if other else []
    for start, end in _spans(seq, want):
        if not any(b0 <= start and end <= b1 for b0, b1 in blocked):
            return True
    return False


def _best(needle: set[str], sentences: list[str]) -> tuple[int | None, float]:
    best, score = None, -1.0
    for i, s in enumerate(sentences):
        c = containment(needle, content_tokens(s))
        if c > score:
            best, score = i, c
    return best, max(score, 0.0)


def edit_undone(edit: dict[str, Any], revised_sentences: list[str]) -> bool:
    """Whether the reviser undid one edit (see the module docstring for the rules)."""
    op = edit["op"]
    if op == "add":
        _, score = _best(content_tokens(edit.get("degraded") or ""), revised_sentences)
        return score < ADDED_GONE
    if op == "delete":
        _, score = _best(content_tokens(edit.get("original") or ""), revised_sentences)
        return bool(revised_sentences) and score >= RESTORED
    if op == "modify":
        term_from, term_to = edit.get("term_from") or "", edit.get("term_to") or ""
        terms = set(tokens(term_from)) | set(tokens(term_to))
        context = content_tokens(edit.get("original") or "") - terms
        if context:
            idx, score = _best(context, revised_sentences)
            if idx is None or score < REGION:
                return False
            region = [revised_sentences[idx]]
        else:
            region = [
                s for s in revised_sentences if has_term(s, term_from) or has_term(s, term_to)
            ]
        return any(
            has_term(s, term_from, other=term_to) and not has_term(s, term_to, other=term_from)
            for s in region
        )
    raise ValueError(f"unknown edit op {op!r}: expected one of {OPS}")


def recovery(
    original: str, degraded: str, edits: list[dict[str, Any]], revised: str
) -> dict[str, Any]:
    """Edits undone / edits made, overall and per edit type, plus per-edit verdicts.

    Also reports ``kept_correct``: how many untouched original sentences survive in the
    revision (containment >= ``RESTORED``) out of ``untouched``.
    """
    revised_sentences = split_sentences(revised)
    per_edit = []
    by_op = {op: {"made": 0, "undone": 0, "rate": None} for op in OPS}
    for edit in edits:
        undone = edit_undone(edit, revised_sentences)
        per_edit.append(
            {"op": edit["op"], "sentence_index": edit.get("sentence_index"), "undone": undone}
        )
        by_op[edit["op"]]["made"] += 1
        by_op[edit["op"]]["undone"] += int(undone)
    for figures in by_op.values():
        if figures["made"]:
            figures["rate"] = figures["undone"] / figures["made"]
    touched = {e.get("sentence_index") for e in edits if e["op"] in ("delete", "modify")}
    untouched = [s for i, s in enumerate(split_sentences(original)) if i not in touched]
    kept = sum(1 for s in untouched if _best(content_tokens(s), revised_sentences)[1] >= RESTORED)
    made = len(edits)
    undone_total = sum(int(p["undone"]) for p in per_edit)
    return {
        "edits_made": made,
        "edits_undone": undone_total,
        "rate": undone_total / made if made else None,
        "by_op": by_op,
        "per_edit": per_edit,
        "untouched": len(untouched),
        "kept_correct": kept,
        "degraded_changed": tokens(degraded) != tokens(revised),
    }


def token_similarity(a: str, b: str) -> float:
    """Similarity of the normalised token sequences (difflib ratio, 0..1)."""
    ta, tb = tokens(a), tokens(b)
    if not ta and not tb:
        return 1.0
    return SequenceMatcher(None, ta, tb, autojunk=False).ratio()


def unchanged_when_correct(original: str, revised: str, threshold: float = UNCHANGED) -> bool:
    """Whether the reviser left a correct description essentially unchanged."""
    return token_similarity(original, revised) >= threshold
