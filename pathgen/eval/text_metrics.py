"""Pure caption text metrics: lengths, vocabulary diversity, BLEU-4, ROUGE-L, edit distance.

Words are lowercase ``\\w+`` runs (:func:`words`). BLEU-4 is sacrebleu's (13a tokenizer,
corpus level, and sentence level with its default exponential smoothing), reported on a
0..1 scale. ROUGE-L is the F-measure of the longest common subsequence of words
(rouge-score, no stemming).

Example::

    distinct_n(["a b a b"], 2)           # 2 distinct bigrams / 3 bigrams
    bleu4(["the cat sat"], ["the cat sat"])["corpus"]
    word_levenshtein("a b c", "a c")    # 1
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")
_PUNCT = re.compile(r"[^\w\s]+")


def words(text: str) -> list[str]:
    """Lowercase word tokens of ``text`` (runs of letters, digits and underscores)."""
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    """Text for exact-duplicate checks: lowercase, punctuation dropped, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The ``n``-grams of ``tokens`` in order."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct-n over a corpus: distinct ``n``-grams / all ``n``-grams (None when there are none).

    n-grams never span two captions.
    """
    grams = [g for text in texts for g in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else None


def type_token_ratio(texts: Sequence[str]) -> float | None:
    """Distinct words / words over the whole corpus (None for an empty corpus)."""
    toks = [w for text in texts for w in words(text)]
    return len(set(toks)) / len(toks) if toks else None


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float | None]:
    """BLEU-4 of ``hypotheses`` against one reference each, on a 0..1 scale.

    Returns ``corpus`` (sacrebleu corpus BLEU) and ``sentence_mean`` (mean sentence BLEU).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return {"corpus": None, "sentence_mean": None}
    import sacrebleu

    corpus = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score / 100
    sentences = [
        sacrebleu.sentence_bleu(h, [r]).score / 100
        for h, r in zip(hypotheses, references, strict=True)
    ]
    return {"corpus": corpus, "sentence_mean": sum(sentences) / len(sentences)}


def rouge_l(hypothesis: str, reference: str) -> dict[str, float]:
    """ROUGE-L precision, recall and F-measure of one caption against its reference."""
    from rouge_score import rouge_scorer

    score = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(reference, hypothesis)
    s = score["rougeL"]
    return {"precision": s.precision, "recall": s.recall, "f": s.fmeasure}


def word_levenshtein(a: str, b: str) -> int:
    """Word-level edit distance (insertions, deletions, substitutions) between ``a`` and ``b``."""
    wa, wb = words(a), words(b)
    prev = list(range(len(wb) + 1))
    for i, x in enumerate(wa, start=1):
        cur = [i]
        for j, y in enumerate(wb, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def normalised_levenshtein(a: str, b: str) -> float:
    """:func:`word_levenshtein` divided by the longer text's word count (0..1)."""
    longest = max(len(words(a)), len(words(b)))
    return word_levenshtein(a, b) / longest if longest else 0.0
