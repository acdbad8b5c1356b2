"""Recovery metrics on planted (original, degraded, revised) triples with known answers."""

from __future__ import annotations

import pytest

from pathgen.stages import degrade_rules, recovery, token_similarity, unchanged_when_correct

ORIGINAL = (
    "The tumour is well differentiated with glandular architecture. Mitotic figures are rare. "
    "The stroma is desmoplastic. Necrosis is absent."
)
EDITS = [
    {
        "op": "modify",
        "sentence_index": 0,
        "original": "The tumour is well differentiated with glandular architecture.",
        "degraded": "The tumour is poorly differentiated with glandular architecture.",
        "term_from": "well differentiated",
        "term_to": "poorly differentiated",
    },
    {
        "op": "delete",
        "sentence_index": 1,
        "original": "Mitotic figures are rare.",
        "degraded": None,
        "term_from": None,
        "term_to": None,
    },
    {
        "op": "add",
        "sentence_index": 4,
        "original": None,
        "degraded": "Perineural invasion is identified.",
        "term_from": None,
        "term_to": None,
    },
    {
        "op": "modify",
        "sentence_index": 3,
        "original": "Necrosis is absent.",
        "degraded": "Necrosis is present.",
        "term_from": "absent",
        "term_to": "present",
    },
]
DEGRADED = (
    "The tumour is poorly differentiated with glandular architecture. The stroma is "
    "desmoplastic. Necrosis is present. Perineural invasion is identified."
)


def test_perfect_reviser_undoes_everything() -> None:
    report = recovery(ORIGINAL, DEGRADED, EDITS, ORIGINAL)
    assert (report["edits_made"], report["edits_undone"], report["rate"]) == (4, 4, 1.0)
    assert report["by_op"]["modify"] == {"made": 2, "undone": 2, "rate": 1.0}
    assert report["kept_correct"] == report["untouched"] == 1


def test_no_op_reviser_undoes_nothing() -> None:
    report = recovery(ORIGINAL, DEGRADED, EDITS, DEGRADED)
    assert (report["edits_undone"], report["rate"]) == (0, 0.0)
    assert report["degraded_changed"] is False
    assert all(v["undone"] == 0 for v in report["by_op"].values())


def test_partial_reviser_gives_exact_counts() -> None:
    # Removes the added sentence (undone), rephrases the first sentence back to well
    # differentiated (undone), leaves necrosis present (not undone), does not restore
    # the mitoses sentence (not undone).
    revised = (
        "The tumour is well-differentiated and shows glandular architecture. The stroma is "
        "desmoplastic. Necrosis is present."
    )
    report = recovery(ORIGINAL, DEGRADED, EDITS, revised)
    assert [p["undone"] for p in report["per_edit"]] == [True, False, True, False]
    assert report["edits_undone"] == 2 and report["rate"] == 0.5
    assert report["by_op"] == {
        "add": {"made": 1, "undone": 1, "rate": 1.0},
        "delete": {"made": 1, "undone": 0, "rate": 0.0},
        "modify": {"made": 2, "undone": 1, "rate": 0.5},
    }


def test_modify_needs_the_old_term_back_not_only_the_new_one_gone() -> None:
    # Dropping the whole sentence removes "poorly differentiated" but does not restore the
    # statement; writing "moderately differentiated" removes it without restoring either.
    dropped = "Mitotic figures are rare. The stroma is desmoplastic. Necrosis is absent."
    other = ORIGINAL.replace("well differentiated", "moderately differentiated")
    for revised in (dropped, other):
        assert recovery(ORIGINAL, DEGRADED, EDITS[:1], revised)["edits_undone"] == 0


def test_nested_terms_are_not_confused() -> None:
    edit = {
        "op": "modify",
        "sentence_index": 0,
        "original": "There is no haemorrhage.",
        "degraded": "There is haemorrhage.",
        "term_from": "no haemorrhage",
        "term_to": "haemorrhage",
    }
    assert (
        recovery(
            "There is no haemorrhage.", "There is haemorrhage.", [edit], "There is no haemorrhage."
        )["edits_undone"]
        == 1
    )
    assert (
        recovery(
            "There is no haemorrhage.", "There is haemorrhage.", [edit], "There is haemorrhage."
        )["edits_undone"]
        == 0
    )


def test_rephrased_restore_of_a_deleted_sentence_counts() -> None:
    delete = [EDITS[1]]
    assert (
        recovery(ORIGINAL, DEGRADED, delete, DEGRADED + " Mitotic figures are rare.")[
            "edits_undone"
        ]
        == 1
    )
    assert (
        recovery(ORIGINAL, DEGRADED, delete, DEGRADED + " Rare mitotic figures seen.")[
            "edits_undone"
        ]
        == 1
    )
    assert recovery(ORIGINAL, DEGRADED, delete, DEGRADED + " Mitoses.")["edits_undone"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_rule_degraded_copies_score_zero_and_one(seed: int) -> None:
    result = degrade_rules(ORIGINAL, seed=seed)
    assert recovery(ORIGINAL, result.text, result.edits, result.text)["edits_undone"] == 0
    assert recovery(ORIGINAL, result.text, result.edits, ORIGINAL)["edits_undone"] == len(
        result.edits
    )


def test_unchanged_when_correct() -> None:
    assert token_similarity(ORIGINAL, ORIGINAL) == 1.0
    assert unchanged_when_correct(
        ORIGINAL, ORIGINAL.replace("well differentiated", "well-differentiated")
    )
    assert unchanged_when_correct(ORIGINAL, ORIGINAL + " Focally.")
    assert not unchanged_when_correct(ORIGINAL, DEGRADED)
    assert not unchanged_when_correct(ORIGINAL, "Mitotic figures are rare.")
