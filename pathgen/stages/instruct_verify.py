"""The rule check of instruct answers against their source description (pure).

Used for template-made items (every answer must be confirmable) and, for model-made
items, as a guard beside the LLM judge (a contradicted contrast term always fails):

* any answer: no contrast-vocabulary term whose partner the description states instead;
* ``open``: every answer sentence is the description's (content words at least
  :data:`MIN_COVERAGE` covered by the description's);
* ``yesno`` with a ``term``: "yes" only when the description contains it, "no" only when
  it does not;
* ``choice`` with ``options``: the answered option is in the description, no other is;
* ``label``: the answer is the tile's manifest label or organ.

Example::

    verdict = check_item(draft, description, context)
    verdict.ok, verdict.reason
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pathgen.stages.instruct_templates import Draft, LabelContext, contains
from pathgen.stages.text import content_tokens, split_sentences
from pathgen.stages.vocabulary import ContrastVocabulary, load_contrast_vocabulary

MIN_COVERAGE = 0.8


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None


def contradictions(answer: str, description: str, vocab: ContrastVocabulary) -> list[str]:
    """``"X (the description says Y)"`` for each term of ``answer`` the description contradicts."""
    out = []
    for pair in vocab.pairs:
        for said, other in ((pair.a, pair.b), (pair.b, pair.a)):
            if (
                contains(answer, said)
                and not contains(description, said)
                and contains(description, other)
            ):
                out.append(f"{said!r} (the description says {other!r})")
    return out


def _unsupported_sentences(answer: str, description: str) -> list[str]:
    have = content_tokens(description)
    out = []
    for sentence in split_sentences(answer):
        words = content_tokens(sentence)
        if words and len(words & have) / len(words) < MIN_COVERAGE:
            out.append(sentence)
    return out


def _check_turn(
    turn: dict[str, Any], description: str, context: LabelContext, vocab: ContrastVocabulary
) -> str | None:
    """Why ``turn``'s answer is unsupported, or None."""
    answer = str(turn.get("answer", "")).strip()
    if not answer:
        return "empty answer"
    kind = turn.get("kind")
    if kind == "label":
        wanted = context.organ if turn.get("field") == "organ" else context.label
        if not wanted or answer.strip(" .").lower() != wanted.lower():
            return f"answer {answer!r} is not the manifest {turn.get('field', 'label')} {wanted!r}"
        return None
    found = contradictions(answer, description, vocab)
    if found:
        return "contradicts the description: " + "; ".join(found)
    term = turn.get("term")
    if kind == "yesno" and term:
        label, present = turn.get("answer_label"), contains(description, str(term))
        if label == "yes" and not present:
            return f"answer 'yes' but the description does not mention {term!r}"
        if label == "no" and present:
            return f"answer 'no' but the description mentions {term!r}"
        answer = answer.split(".", 1)[1] if "." in answer[:4] else ""
    options = turn.get("options")
    if kind == "choice" and options:
        letter = str(turn.get("answer_letter", answer[:1])).upper()
        index = "ABCDEFGH".find(letter)
        if not 0 <= index < len(options):
            return f"answer {answer!r} names no option"
        if not contains(description, options[index]):
            return f"answer {options[index]!r} is not in the description"
        wrong = [o for i, o in enumerate(options) if i != index and contains(description, o)]
        if wrong:
            return f"distractor {wrong[0]!r} is in the description"
        return None
    if kind in ("open", "yesno"):
        missing = _unsupported_sentences(answer, description)
        if missing:
            return f"not in the description: {missing[0]!r}"
    return None


def check_item(
    draft: Draft,
    description: str,
    context: LabelContext,
    vocab: ContrastVocabulary | None = None,
) -> Verdict:
    """The rule check of every turn of ``draft`` (the first failing turn gives the reason)."""
    vocab = vocab or load_contrast_vocabulary()
    for i, turn in enumerate(draft.turns):
        why = _check_turn(turn, description, context, vocab)
        if why:
            prefix = f"turn {i + 1}: " if len(draft.turns) > 1 else ""
            return Verdict(False, prefix + why)
    return Verdict(True)
