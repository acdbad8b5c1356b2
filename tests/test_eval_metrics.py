"""Pure evaluation metrics against values computed by hand on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pathgen.eval.ranking import (
    exact_duplicate_rate,
    near_duplicate_flags,
    near_duplicate_rate,
    recall_at_k,
    target_ranks,
)
from pathgen.eval.review_metrics import describe, edit_distances, review_rates
from pathgen.eval.text_metrics import (
    bleu4,
    distinct_n,
    normalise,
    normalised_levenshtein,
    rouge_l,
    type_token_ratio,
    word_levenshtein,
    words,
)

REF = "the cat sat on the mat"
HYP = "the cat sat on a mat"


def test_bleu4_matches_hand_computed_precisions() -> None:
    # Modified n-gram precisions of HYP against REF: 1-grams 5/6, 2-grams 3/5
    # ("the cat", "cat sat", "sat on"), 3-grams 2/4, 4-grams 1/3; equal lengths, so no
    # brevity penalty: BLEU = geometric mean of the four precisions.
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    scores = bleu4([HYP], [REF])
    assert scores["corpus"] == pytest.approx(expected, abs=1e-9)
    assert scores["sentence_mean"] == pytest.approx(expected, abs=1e-9)


def test_bleu4_identity_and_corpus_level_pooling() -> None:
    assert bleu4([REF], [REF])["corpus"] == pytest.approx(1.0)
    # Corpus BLEU pools n-gram counts: one perfect pair plus HYP gives
    # precisions (11/12, 8/10, 6/8, 4/6) — not the mean of the two sentence scores.
    pooled = (11 / 12 * 8 / 10 * 6 / 8 * 4 / 6) ** 0.25
    scores = bleu4([REF, HYP], [REF, REF])
    assert scores["corpus"] == pytest.approx(pooled, abs=1e-9)
    sentence = (1.0 + (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25) / 2
    assert scores["sentence_mean"] == pytest.approx(sentence, abs=1e-9)
    assert bleu4([], []) == {"corpus": None, "sentence_mean": None}
    with pytest.raises(ValueError):
        bleu4(["a"], [])


def test_rouge_l_from_longest_common_subsequence() -> None:
    # LCS("a cat sat on mat", REF) = "cat sat on mat" = 4 words: P = 4/5, R = 4/6.
    score = rouge_l("a cat sat on mat", REF)
    p, r = 4 / 5, 4 / 6
    assert score["precision"] == pytest.approx(p)
    assert score["recall"] == pytest.approx(r)
    assert score["f"] == pytest.approx(2 * p * r / (p + r))
    # Order matters for an LCS: reversed words share only one word in order.
    assert rouge_l("mat the", "the mat")["f"] == pytest.approx(0.5)


def test_distinct_n_and_type_token_ratio() -> None:
    texts = ["A b a b", "b c"]
    # words: [a b a b] [b c] -> unigrams 6, distinct {a,b,c} = 3
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)
    # bigrams within captions: (a b)(b a)(a b) + (b c) = 4, distinct 3
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert type_token_ratio(texts) == pytest.approx(3 / 6)
    assert distinct_n(["one"], 2) is None
    assert type_token_ratio([]) is None
    assert words("Well-differentiated, H&E!") == ["well", "differentiated", "h", "e"]


def test_word_levenshtein() -> None:
    assert word_levenshtein("a b c", "a c") == 1
    assert word_levenshtein("kitten sat down", "sitting sat") == 2
    assert word_levenshtein("", "x y") == 2
    assert word_levenshtein("The cat.", "the CAT") == 0
    assert normalised_levenshtein("a b c d", "a x c") == pytest.approx(2 / 4)
    assert normalised_levenshtein("", "") == 0.0
    assert edit_distances([("a b", "a b"), ("a", "b")]) == [0.0, 1.0]


def test_recall_at_k_on_a_small_similarity_matrix() -> None:
    sim = np.array(
        [
            [0.9, 0.1, 0.2, 0.0],  # target 0 ranks 1
            [0.5, 0.4, 0.6, 0.1],  # target 1 ranks 3
            [0.3, 0.3, 0.3, 0.3],  # target 2 ties everything: rank 1
        ]
    )
    targets = [0, 1, 2]
    assert target_ranks(sim, targets).tolist() == [1, 3, 1]
    assert recall_at_k(sim, targets, ks=(1, 2, 3)) == {
        1: pytest.approx(2 / 3),
        2: pytest.approx(2 / 3),
        3: pytest.approx(1.0),
    }
    assert recall_at_k(np.zeros((0, 4)), [], ks=(1,)) == {1: None}
    with pytest.raises(ValueError):
        target_ranks(sim, [0, 1])


def test_near_and_exact_duplicates() -> None:
    angle = math.radians(10)  # cos 10° = 0.985 >= 0.95; cos 30° = 0.866 < 0.95
    emb = np.array(
        [
            [1.0, 0.0],
            [math.cos(angle), math.sin(angle)],
            [0.0, 1.0],
            [math.cos(math.radians(60)), math.sin(math.radians(60))],
        ]
    )
    assert near_duplicate_flags(emb, 0.95).tolist() == [True, True, False, False]
    assert near_duplicate_rate(emb, 0.95) == pytest.approx(0.5)
    assert near_duplicate_rate(emb[:1], 0.95) == 0.0
    assert near_duplicate_rate(np.zeros((0, 2)), 0.95) is None
    texts = ["Dense stroma.", "dense  STROMA", "Necrosis.", "necrosis present"]
    assert normalise("Dense  STROMA!") == "dense stroma"
    assert exact_duplicate_rate(texts) == pytest.approx(2 / 4)
    assert exact_duplicate_rate([]) is None


def test_review_rates_and_describe() -> None:
    rates = review_rates(["accept", "reject", "accept", "edit"])
    assert rates["reviewed"] == 4
    assert (rates["accept_rate"], rates["reject_rate"], rates["edit_rate"]) == (0.5, 0.25, 0.25)
    assert rates["accept_count"] == 2
    assert review_rates([])["accept_rate"] is None
    with pytest.raises(ValueError, match="maybe"):
        review_rates(["maybe"])
    d = describe([1.0, 2.0, 3.0, 4.0])
    assert (d["n"], d["mean"], d["median"], d["min"], d["max"]) == (4, 2.5, 2.5, 1.0, 4.0)
    assert d["std"] == pytest.approx(math.sqrt(1.25))
    assert describe([])["mean"] is None
