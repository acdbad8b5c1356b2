"""Rule-based degradation: a wrong copy of a description with known, stored edits.

Three edit operations, drawn deterministically from a seed:

* ``add``: insert a plausible finding (from ``contrast_pairs.yaml``'s ``findings``) that the
  description does not mention; ``sentence_index`` is the index of the original sentence
  it is inserted before (``len(sentences)`` = at the end; never just after a deleted one);
* ``delete``: remove the original sentence ``sentence_index``;
* ``modify``: in the original sentence ``sentence_index`` swap ``term_from`` for its
  contrasting ``term_to`` (e.g. well -> poorly differentiated).

Each edit is a dict ``{"op", "sentence_index", "original", "degraded", "term_from",
"term_to"}``; :func:`apply_edits` rebuilds the degraded text from the original and the
edits, so the edits are a complete record of the differences.

Example::

    result = degrade_rules(description, seed=seed_from_key(tile_id, revision_id, copy))
    result.text, result.edits
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pathgen.stages.text import join_sentences, split_sentences
from pathgen.stages.vocabulary import ContrastVocabulary, load_contrast_vocabulary, term_pattern

OPS = ("modify", "add", "delete")


@dataclass(frozen=True)
class Degraded:
    """A degraded copy and the edits that made it."""

    text: str
    edits: list[dict[str, Any]]


@dataclass(frozen=True)
class TermMatch:
    start: int
    end: int
    term_from: str
    term_to: str
    category: str


def seed_from_key(*parts: object) -> int:
    """A stable 63-bit seed from any key parts (tile id, revision id, copy number...)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def find_contrast_terms(sentence: str, vocab: ContrastVocabulary) -> list[TermMatch]:
    """Non-overlapping contrast-pair terms in ``sentence`` (longer matches win), in text order."""
    found: list[TermMatch] = []
    for pair in vocab.pairs:
        for src, dst in ((pair.a, pair.b), (pair.b, pair.a)):
            for m in term_pattern(src).finditer(sentence):
                found.append(TermMatch(m.start(), m.end(), m.group(0), dst, pair.category))
    found.sort(key=lambda t: (-(t.end - t.start), t.start))
    kept: list[TermMatch] = []
    for cand in found:
        if all(cand.end <= k.start or cand.start >= k.end for k in kept):
            kept.append(cand)
    return sorted(kept, key=lambda t: t.start)


def swap_term(sentence: str, match: TermMatch) -> str:
    """Replace ``match`` in ``sentence`` by its contrasting term, keeping a leading capital."""
    replacement = match.term_to
    if match.term_from[:1].isupper():
        replacement = replacement[:1].upper() + replacement[1:]
    return sentence[: match.start] + replacement + sentence[match.end :]


def _edit(op: str, index: int, original: str | None, degraded: str | None, **terms: Any) -> dict:
    return {
        "op": op,
        "sentence_index": index,
        "original": original,
        "degraded": degraded,
        "term_from": terms.get("term_from"),
        "term_to": terms.get("term_to"),
    }


def degrade_rules(
    text: str,
    seed: int,
    n_edits: int = 3,
    vocab: ContrastVocabulary | None = None,
) -> Degraded:
    """Make ``n_edits`` edits (modify, add, delete, then repeating) deterministically from ``seed``.

    An operation that is impossible (no contrast term left, fewer than two sentences left
    to delete from, no new finding) is replaced by a possible one; fewer edits are made
    only when none is possible. At least one original sentence is always kept; an empty
    text gets no edits.
    """
    vocab = vocab or load_contrast_vocabulary()
    sentences = split_sentences(text)
    if not sentences:
        return Degraded(text="", edits=[])
    rng = random.Random(seed)
    lowered = text.lower()
    touched: set[int] = set()
    edits: list[dict[str, Any]] = []
    used_findings: set[str] = set()

    def do_modify() -> dict | None:
        cands = [
            (i, m)
            for i, s in enumerate(sentences)
            if i not in touched
            for m in find_contrast_terms(s, vocab)
        ]
        if not cands:
            return None
        i, m = cands[rng.randrange(len(cands))]
        touched.add(i)
        new = swap_term(sentences[i], m)
        return _edit("modify", i, sentences[i], new, term_from=m.term_from, term_to=m.term_to)

    def do_delete() -> dict | None:
        deleted = sum(1 for e in edits if e["op"] == "delete")
        cands = [i for i in range(len(sentences)) if i not in touched]
        if len(sentences) - deleted < 2 or not cands:
            return None
        i = cands[rng.randrange(len(cands))]
        touched.add(i)
        return _edit("delete", i, sentences[i], None)

    def do_add() -> dict | None:
        cands = [
            f
            for f in vocab.findings
            if f.sentence not in used_findings and f.key.lower() not in lowered
        ]
        if not cands:
            return None
        finding = cands[rng.randrange(len(cands))]
        used_findings.add(finding.sentence)
        return _edit("add", rng.randint(0, len(sentences)), None, finding.sentence)

    actions = {"modify": do_modify, "add": do_add, "delete": do_delete}
    for k in range(n_edits):
        wanted = OPS[k % len(OPS)]
        order = [wanted] + [op for op in OPS if op != wanted]
        for op in order:
            edit = actions[op]()
            if edit is not None:
                edits.append(edit)
                break
        else:
            break
    deleted = {e["sentence_index"] for e in edits if e["op"] == "delete"}
    for e in edits:  # canonical add position: before any run of deleted sentences
        while e["op"] == "add" and e["sentence_index"] - 1 in deleted:
            e["sentence_index"] -= 1
    return Degraded(text=apply_edits(text, edits), edits=edits)


def apply_edits(original: str, edits: list[dict[str, Any]]) -> str:
    """Rebuild the degraded text from ``original`` and rule-mode ``edits``.

    Raises ``ValueError`` when an edit does not fit the original (wrong index or sentence).
    """
    sentences = split_sentences(original)
    adds: dict[int, list[str]] = defaultdict(list)
    replaced: dict[int, str | None] = {}
    for e in edits:
        i = e["sentence_index"]
        if e["op"] == "add":
            if not 0 <= i <= len(sentences):
                raise ValueError(f"add edit index {i} outside 0..{len(sentences)}")
            adds[i].append(e["degraded"])
            continue
        if not 0 <= i < len(sentences) or sentences[i] != e["original"]:
            raise ValueError(f"{e['op']} edit does not match original sentence {i}")
        replaced[i] = e["degraded"] if e["op"] == "modify" else None
    out: list[str] = []
    for i, sentence in enumerate(sentences):
        out.extend(adds.get(i, []))
        new = replaced.get(i, sentence)
        if new:
            out.append(new)
    out.extend(adds.get(len(sentences), []))
    return join_sentences(out)
