"""Rule-based degrade: edit operations, reproducibility from the edits, determinism per seed."""

from __future__ import annotations

from collections import Counter

import pytest

from pathgen.settings import StageSettings
from pathgen.stages import apply_edits, degrade_rules, run_degrade, seed_from_key
from pathgen.stages.degrade_rules import find_contrast_terms, swap_term
from pathgen.stages.text import split_sentences
from pathgen.stages.vocabulary import load_contrast_vocabulary, term_pattern

DESCRIPTION = (
    "The section shows an invasive ductal carcinoma. The tumour is moderately differentiated "
    "with glandular architecture. The nuclei show marked nuclear pleomorphism with prominent "
    "nucleoli. Mitotic figures are numerous. The stroma is desmoplastic with a lymphocytic "
    "infiltrate. Necrosis is absent."
)


def test_vocabulary_is_rich() -> None:
    vocab = load_contrast_vocabulary()
    assert len(vocab.pairs) >= 40
    categories = {p.category for p in vocab.pairs}
    for needed in (
        "differentiation",
        "mitoses",
        "necrosis",
        "inflammation",
        "stroma",
        "nuclei",
        "architecture",
        "invasion",
        "margins",
        "cells",
        "keratinisation",
        "mucin",
        "calcification",
        "fibrosis",
    ):
        assert needed in categories
    assert len(vocab.findings) >= 20
    assert len(vocab.sha256) == 64


def test_term_matching_prefers_longer_terms_and_hyphen_variants() -> None:
    vocab = load_contrast_vocabulary()
    matches = find_contrast_terms("A non-keratinising, poorly-differentiated tumour.", vocab)
    assert [(m.term_from, m.term_to) for m in matches] == [
        ("non-keratinising", "keratinising"),
        ("poorly-differentiated", "well differentiated"),
    ]
    assert (
        swap_term("Poorly differentiated.", find_contrast_terms("Poorly differentiated.", vocab)[0])
        == "Well differentiated."
    )
    assert term_pattern("well differentiated").search("WELL-DIFFERENTIATED glands")


@pytest.mark.parametrize("seed", range(12))
def test_edits_reproduce_the_degraded_text(seed: int) -> None:
    result = degrade_rules(DESCRIPTION, seed=seed, n_edits=3)
    assert sorted(e["op"] for e in result.edits) == ["add", "delete", "modify"]
    assert apply_edits(DESCRIPTION, result.edits) == result.text
    original = split_sentences(DESCRIPTION)
    degraded = split_sentences(result.text)
    for edit in result.edits:
        assert set(edit) == {"op", "sentence_index", "original", "degraded", "term_from", "term_to"}
        if edit["op"] == "add":
            assert edit["original"] is None and edit["degraded"] in degraded
            assert edit["degraded"] not in original
        elif edit["op"] == "delete":
            assert original[edit["sentence_index"]] == edit["original"]
            assert edit["original"] not in degraded and edit["degraded"] is None
        else:
            assert original[edit["sentence_index"]] == edit["original"]
            assert edit["degraded"] in degraded and edit["original"] not in degraded
            assert edit["term_from"].lower() in edit["original"].lower()
            assert edit["term_to"].lower() in edit["degraded"].lower()
            assert edit["original"].replace(edit["term_from"], edit["term_to"], 1).lower() == (
                edit["degraded"].lower()
            )
    # Exactly the edited sentences differ.
    untouched = [
        s
        for i, s in enumerate(original)
        if i not in {e["sentence_index"] for e in result.edits if e["op"] != "add"}
    ]
    assert Counter(degraded) == Counter(untouched) + Counter(
        e["degraded"] for e in result.edits if e["op"] != "delete"
    )


def test_deterministic_per_seed_and_varies_across_seeds() -> None:
    seed = seed_from_key("tile-17", "rev-3", 0)
    assert seed == seed_from_key("tile-17", "rev-3", 0) != seed_from_key("tile-17", "rev-3", 1)
    assert degrade_rules(DESCRIPTION, seed=seed) == degrade_rules(DESCRIPTION, seed=seed)
    texts = {degrade_rules(DESCRIPTION, seed=s).text for s in range(20)}
    assert len(texts) >= 10


def test_more_edits_and_impossible_ops_fall_back() -> None:
    result = degrade_rules(DESCRIPTION, seed=3, n_edits=6)
    assert len(result.edits) == 6
    assert apply_edits(DESCRIPTION, result.edits) == result.text
    # A single sentence without contrast terms: only an add is possible, never a delete.
    single = degrade_rules("Fragments of tissue are seen.", seed=1, n_edits=3)
    assert [e["op"] for e in single.edits] == ["add", "add", "add"]
    assert single.text.count("Fragments of tissue are seen.") == 1


def test_apply_edits_rejects_edits_of_another_text() -> None:
    result = degrade_rules(DESCRIPTION, seed=2)
    with pytest.raises(ValueError, match="does not match"):
        apply_edits("A different text. With two sentences.", result.edits)


async def test_rules_runner_records_vocabulary_provenance() -> None:
    settings = StageSettings(mode="rules")
    out = await run_degrade(None, settings, DESCRIPTION, seed=11, n_edits=3)
    vocab = load_contrast_vocabulary()
    assert out.ok and out.provider == "rules" and out.cost == 0
    assert out.template_name == "vocabulary/contrast_pairs.yaml"
    assert out.template_hash == vocab.sha256
    assert out.params == {"mode": "rules", "seed": 11, "n_edits": 3}
    assert out.edits == degrade_rules(DESCRIPTION, seed=11).edits
    empty = await run_degrade(None, settings, "", seed=1)
    assert empty.status == "failed" and "no edit possible" in empty.error
