"""Template-made instruct items from a description (the offline provider of ``instruct``).

Pure and deterministic from a seed. Every answer is taken from the description (or the
manifest, for label questions), so the rule check (:mod:`.instruct_verify`) can confirm it:

* ``open``: a question per topic (the whole tissue, architecture, cytology, stroma,
  inflammation, necrosis) answered with the description's sentences on that topic;
* ``yesno``: half "yes" (a contrast-vocabulary term the description contains, answered
  with its sentence) and half "no" (the term's contrasting partner, which the
  description contradicts, else a term it does not contain);
* ``choice``: which term of a category fits, the distractors being the category's other
  terms that the description does not contain;
* ``label``: the slide's manifest label (with the run's labels as the choices) and organ;
* ``conversation``: 2 to ``max_turns`` topic turns, PathGen-Instruct style.

Example::

    drafts = make_items(description, InstructMix(open=2, yesno=2), LabelContext("tumour"), seed=7)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pathgen.stages.degrade_rules import find_contrast_terms
from pathgen.stages.text import split_sentences
from pathgen.stages.vocabulary import ContrastVocabulary, load_contrast_vocabulary, term_pattern

GENERATOR = "instruct-templates-v1"
LETTERS = "ABCDEFGH"
#: Topic -> (word stems that put a sentence under it, question phrasings).
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "architecture": (
        ("architect", "gland", "papillar", "cribriform", "solid", "trabec", "sheet", "nest",
         "cord", "lobul", "pattern"),
        ("How are the cells arranged in this image?", "Describe the tissue architecture."),
    ),
    "cytology": (
        ("nucle", "chromatin", "cytoplasm", "pleomorph", "mitos", "mitot", "cell"),
        ("What are the cytological features of the cells?", "Describe the nuclei and cells."),
    ),
    "stroma": (
        ("stroma", "fibro", "collagen", "desmoplas", "septa", "connective"),
        ("What does the stroma look like?", "Describe the stroma in this image."),
    ),
    "inflammation": (
        ("inflamm", "lymphocyt", "neutrophil", "plasma cell", "eosinophil", "granulom",
         "infiltrate"),
        ("Is there inflammation, and of what kind?", "Describe the inflammatory cells."),
    ),
    "necrosis": (
        ("necro", "apoptos"),
        ("Is necrosis present, and what does it look like?", "Describe any necrosis."),
    ),
}  # fmt: skip
YESNO = ("Does the image show this feature: {}?", "Is this feature present in the image: {}?")
OVERVIEW = ("Describe the tissue shown in this image.", "What does this H&E image show?")


@dataclass(frozen=True)
class InstructMix:
    """How many items of each type to make for one tile."""

    open: int = 2
    yesno: int = 2
    choice: int = 1
    label: int = 1
    conversation: int = 1
    max_turns: int = 4


@dataclass(frozen=True)
class LabelContext:
    """The tile's manifest label and organ, and every label/organ of the run (choices)."""

    label: str | None = None
    organ: str | None = None
    labels: tuple[str, ...] = ()
    organs: tuple[str, ...] = ()


@dataclass
class Draft:
    """An item before it is verified and stored."""

    kind: str
    turns: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Term:
    term: str
    partner: str
    category: str
    sentence: str


def contains(text: str, term: str) -> bool:
    """Whether ``term`` occurs in ``text`` (word boundaries, hyphen = space)."""
    return term_pattern(term).search(text) is not None


def present_terms(description: str, vocab: ContrastVocabulary) -> list[_Term]:
    """Contrast-vocabulary terms the description contains (not its partner), in text order."""
    out: list[_Term] = []
    seen: set[str] = set()
    for sentence in split_sentences(description):
        for m in find_contrast_terms(sentence, vocab):
            term = m.term_from.lower().replace("-", " ")
            if term in seen or contains(description, m.term_to):
                continue
            seen.add(term)
            out.append(_Term(term, m.term_to, m.category, sentence))
    return out


def _absent_terms(description: str, vocab: ContrastVocabulary) -> list[tuple[str, str]]:
    """(term, category) of pairs neither of whose terms the description contains."""
    return [
        (t, p.category)
        for p in vocab.pairs
        if not contains(description, p.a) and not contains(description, p.b)
        for t in (p.a, p.b)
    ]


def topic_sentences(description: str) -> dict[str, list[str]]:
    """The description's sentences under each topic (a sentence may be under several)."""
    out: dict[str, list[str]] = {}
    for sentence in split_sentences(description):
        low = sentence.lower()
        for topic, (stems, _) in TOPICS.items():
            if any(s in low for s in stems):
                out.setdefault(topic, []).append(sentence)
    return out


def _open_turns(description: str, rng: random.Random) -> list[dict[str, Any]]:
    """Every open question the description can answer: the overview first, then topics."""
    turns = [{"kind": "open", "topic": "overview", "question": rng.choice(OVERVIEW),
              "answer": " ".join(split_sentences(description))}]  # fmt: skip
    for topic, sentences in topic_sentences(description).items():
        question = rng.choice(TOPICS[topic][1])
        turns.append({"kind": "open", "topic": topic, "question": question,
                      "answer": " ".join(sentences)})  # fmt: skip
    return turns


def _yes(t: _Term, rng: random.Random) -> dict[str, Any]:
    question = rng.choice(YESNO)
    return {"kind": "yesno", "term": t.term, "answer_label": "yes",
            "question": question.format(t.term), "answer": f"Yes. {t.sentence}"}  # fmt: skip


def _no(term: str, evidence: str | None, rng: random.Random) -> dict[str, Any]:
    question = rng.choice(YESNO)
    answer = f"No. {evidence}" if evidence else f"No, {term} is not seen in this image."
    return {"kind": "yesno", "term": term, "answer_label": "no",
            "question": question.format(term), "answer": answer}  # fmt: skip


def _yesno(
    description: str, n: int, vocab: ContrastVocabulary, rng: random.Random, odd_yes: bool
) -> list[Draft]:
    present = present_terms(description, vocab)
    rng.shuffle(present)
    negatives = [(t.partner, t.sentence) for t in present]  # contradicted: best negatives
    absent = _absent_terms(description, vocab)
    rng.shuffle(absent)
    negatives += [(term, None) for term, _ in absent]
    pairs = min(n // 2, len(present), len(negatives))
    n_yes = pairs + (1 if n % 2 and odd_yes and len(present) > pairs else 0)
    n_no = pairs + (1 if n % 2 and not odd_yes and len(negatives) > pairs else 0)
    drafts = [Draft("yesno", [_yes(t, rng)]) for t in present[:n_yes]]
    drafts += [Draft("yesno", [_no(term, ev, rng)]) for term, ev in negatives[:n_no]]
    rng.shuffle(drafts)
    return drafts


def _choice(description: str, n: int, vocab: ContrastVocabulary, rng: random.Random) -> list[Draft]:
    absent = _absent_terms(description, vocab)
    drafts = []
    present = present_terms(description, vocab)
    rng.shuffle(present)
    for t in present[:n]:
        others = [a for a, c in absent if c != t.category]  # clearly different findings
        rng.shuffle(others)
        options = [t.term, t.partner, *others[:2]]
        rng.shuffle(options)
        letters = LETTERS[: len(options)]
        listed = " ".join(f"{letter}. {o}" for letter, o in zip(letters, options, strict=True))
        right = letters[options.index(t.term)]
        question = (
            f"Which of the following is seen in this image? {listed} "
            "Answer with the option's letter."
        )
        turn = {"kind": "choice", "question": question, "options": options,
                "answer_letter": right, "answer": f"{right}. {t.term}"}  # fmt: skip
        drafts.append(Draft("choice", [turn]))
    return drafts


def _labels(context: LabelContext, n: int) -> list[Draft]:
    drafts = []
    if context.label:
        choices = sorted(set(context.labels) | {context.label})
        question = "What is the diagnostic category of this tissue?"
        if len(choices) > 1:
            question = f"Which category does this tissue belong to: {', '.join(choices)}?"
        turn = {"kind": "label", "field": "label", "question": question, "answer": context.label}
        drafts.append(Draft("label", [turn]))
    if context.organ:
        choices = sorted(set(context.organs) | {context.organ})
        question = "Which organ is this tissue from?"
        if len(choices) > 1:
            question = f"Which organ is this tissue from: {', '.join(choices)}?"
        turn = {"kind": "label", "field": "organ", "question": question, "answer": context.organ}
        drafts.append(Draft("label", [turn]))
    return drafts[:n]


def make_items(
    description: str,
    mix: InstructMix,
    context: LabelContext,
    *,
    seed: int,
    vocab: ContrastVocabulary | None = None,
) -> list[Draft]:
    """The tile's items in type order (open, yesno, choice, label, conversation).

    With an odd ``mix.yesno`` the extra question is a "yes" for odd seeds, so a run's
    yes/no answers stay balanced; a tile with no usable term gets fewer items.
    """
    vocab = vocab or load_contrast_vocabulary()
    rng = random.Random(seed)
    if not split_sentences(description):
        return _labels(context, mix.label)
    opens = _open_turns(description, rng)
    drafts = [Draft("open", [t]) for t in opens[: mix.open]]
    drafts += _yesno(description, mix.yesno, vocab, rng, odd_yes=bool(seed % 2))
    drafts += _choice(description, mix.choice, vocab, rng)
    drafts += _labels(context, mix.label)
    for _ in range(mix.conversation):
        pool = opens[1:] if len(opens) > 2 else opens
        if len(pool) < 2:
            break
        turns = rng.sample(pool, min(len(pool), rng.randint(2, mix.max_turns)))
        drafts.append(Draft("conversation", [dict(t) for t in turns]))
    return drafts
