"""CLIP zero-shot baselines for describe, revise and summarize (used by the offline provider).

* :func:`describe_with_clip` scores every option of each morphology group
  (``prompts/vocabulary/morphology.yaml``) against the image, softmaxes within the group
  and mentions the group only when its winner leads by ``min_margin`` (``always`` groups
  are always mentioned), in the file's order.
* :func:`revise_with_clip` swaps a contrast-pair term back when the sentence with the
  opposite term matches the image clearly better, then drops sentences that match the
  image much worse than the description's other sentences.
* :func:`summarize_extractive` keeps the most central sentences (then clauses) that fit
  the token limit, in their original order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pathgen.stages.degrade_rules import find_contrast_terms, swap_term
from pathgen.stages.text import join_sentences, split_sentences
from pathgen.stages.vocabulary import ContrastVocabulary, MorphologyVocabulary

if TYPE_CHECKING:
    from PIL import Image

    from pathgen.stages.protocols import ClipScorer

#: A swap needs the opposite sentence to beat the written one by this cosine margin.
SWAP_MARGIN = 0.02
#: A sentence is dropped when its score is this many std below the others' median.
DROP_Z = 1.5


@dataclass(frozen=True)
class GroupChoice:
    group: str
    option: str
    probability: float
    margin: float
    sentence: str | None
    mentioned: bool


class OptionEmbeddings:
    """Template-ensemble text embeddings of every morphology option, computed once."""

    def __init__(self, scorer: ClipScorer, vocab: MorphologyVocabulary) -> None:
        self.vocab = vocab
        self.by_group: list[np.ndarray] = []
        for group in vocab.groups:
            rows = []
            for option in group.options:
                texts = [t.format(p) for p in option.prompts for t in vocab.templates]
                emb = np.asarray(scorer.encode_texts(texts), dtype=np.float32).mean(axis=0)
                rows.append(emb / max(float(np.linalg.norm(emb)), 1e-12))
            self.by_group.append(np.stack(rows))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max()
    e = np.exp(z)
    return e / e.sum()


def image_embedding(scorer: ClipScorer, image: Image.Image) -> np.ndarray:
    return np.asarray(scorer.encode_images([image]), dtype=np.float32)[0]


def describe_with_clip(
    image_emb: np.ndarray, options: OptionEmbeddings
) -> tuple[str, list[GroupChoice]]:
    """Compose a description from the confident group winners; returns text and all choices."""
    vocab = options.vocab
    choices = []
    for group, emb in zip(vocab.groups, options.by_group, strict=True):
        probs = _softmax(emb @ image_emb / vocab.softmax_temperature)
        order = np.argsort(-probs, kind="stable")
        best = int(order[0])
        margin = float(probs[best] - probs[int(order[1])])
        option = group.options[best]
        mentioned = option.sentence is not None and (group.always or margin >= vocab.min_margin)
        choices.append(
            GroupChoice(
                group.name, option.name, float(probs[best]), margin, option.sentence, mentioned
            )
        )
    text = join_sentences([c.sentence for c in choices if c.mentioned and c.sentence])
    return text, choices


def revise_with_clip(
    image_emb: np.ndarray,
    description: str,
    scorer: ClipScorer,
    contrast: ContrastVocabulary,
) -> tuple[str, list[dict]]:
    """Swap contradicted terms back and drop unsupported sentences; returns text and actions."""
    sentences = split_sentences(description)
    if not sentences:
        return "", []
    actions: list[dict] = []
    for i, sentence in enumerate(sentences):
        for match in reversed(find_contrast_terms(sentence, contrast)):
            alt = swap_term(sentence, match)
            emb = np.asarray(scorer.encode_texts([sentence, alt]), dtype=np.float32)
            s_cur, s_alt = float(emb[0] @ image_emb), float(emb[1] @ image_emb)
            if s_alt > s_cur + SWAP_MARGIN:
                actions.append(
                    {
                        "action": "swap",
                        "sentence_index": i,
                        "term_from": match.term_from,
                        "term_to": match.term_to,
                    }
                )
                sentence = alt
        sentences[i] = sentence
    scores = np.asarray(scorer.encode_texts(sentences), dtype=np.float32) @ image_emb
    keep = list(range(len(sentences)))
    if len(sentences) >= 3:
        for i in range(len(sentences)):
            others = np.delete(scores, i)
            spread = max(float(others.std()), 1e-6)
            if scores[i] < float(np.median(others)) - DROP_Z * spread:
                keep.remove(i)
                actions.append({"action": "drop", "sentence_index": i})
    if not keep:
        keep = [int(np.argmax(scores))]
    return join_sentences([sentences[i] for i in keep]), actions


def _clauses(sentence: str) -> list[str]:
    parts = [p.strip(" ,;") for p in sentence.replace(";", ",").split(",")]
    return [p if p.endswith(".") else p + "." for p in parts if p]


def summarize_extractive(description: str, scorer: ClipScorer, max_tokens: int) -> str:
    """The most central sentences (by CLIP text similarity to the whole) within ``max_tokens``.

    Falls back to clauses, then to the leading words of the most central unit, so the
    result always fits; it is empty only for an empty description.
    """
    units = split_sentences(description)
    if not units:
        return ""
    if not any(scorer.count_tokens(u) <= max_tokens for u in units):
        units = [c for u in units for c in _clauses(u)]
    emb = np.asarray(scorer.encode_texts(units), dtype=np.float32)
    centre = emb.mean(axis=0)
    rank = np.argsort(-(emb @ centre), kind="stable")
    chosen: list[int] = []
    for i in rank:
        trial = join_sentences([units[j] for j in sorted([*chosen, int(i)])])
        if scorer.count_tokens(trial) <= max_tokens:
            chosen.append(int(i))
    if chosen:
        return join_sentences([units[j] for j in sorted(chosen)])
    words = units[int(rank[0])].rstrip(".").split()
    while words and scorer.count_tokens(" ".join(words) + ".") > max_tokens:
        words.pop()
    return " ".join(words) + "." if words else ""
